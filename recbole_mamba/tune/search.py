"""Ray Tune searches over the plugin's pipeline (``run_recbole_mamba.py --tune``).

Each trial runs :func:`recbole_mamba.quick_start.run` with the sampled parameters over the fixed
overrides, reports the validation metric after every epoch and, once trained, the test metrics.
Trials are compared (by ASHA at its rungs, and for ``best.yaml``) on their best validation score so
far: training keeps the best checkpoint, so a trial that peaked and then overfits is as good as its
peak. A trial that raises is recorded as failed with its error and the search goes on. Under
``tune_dir``: ``results.csv``, ``results.md`` (a row per trial), ``best.yaml`` (the best
configuration, for ``--config_files``, with every trial's parameters and score in its header) and
``ray/``, Ray's experiment folder, which ``resume=True`` continues: each trial's latest checkpoint
there is its run's resume state, so a trial interrupted mid-run (the search stopped or killed)
continues after its last evaluated epoch and ends as it would have (``resumed_after_epochs`` in
the tables).
"""

import csv
import math
import os
import shutil
import tempfile
import time

import yaml

from recbole_mamba.config import ConfigError, default_data_path, parse_cmd_args
from recbole_mamba.tune.cluster import start_ray
from recbole_mamba.tune.space import SpaceError, load_space, to_ray, trial_points

SCHEDULERS = ("asha", "fifo")
EXPERIMENT = "ray"


def _trial(config, model, dataset, config_files, fixed_args, bigger):
    """One trial, run by Ray in a worker: report each epoch with the run's resume state as the
    trial's checkpoint, then the test metrics. A trial restored from a checkpoint (``--resume``
    after the search was stopped or killed) continues its run after the last reported epoch."""
    from ray import tune

    from recbole_mamba.quick_start import run
    from recbole_mamba.trainer.checkpoint import load_checkpoint
    from recbole_mamba.trainer.resume import find_resume_file

    saved = tempfile.mkdtemp(prefix="trial-")  # the run's checkpoint_dir: its best checkpoint and resume state
    checkpoint = tune.get_checkpoint()
    best, resume, resumed_after = (-math.inf if bigger else math.inf), None, 0
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            shutil.copytree(folder, saved, dirs_exist_ok=True)
        resume = saved
        state = load_checkpoint(find_resume_file(saved))
        best, resumed_after = state["best_valid_score"], state["epoch"] + 1

    def report_epoch(epoch_idx, valid_score, valid_result):
        nonlocal best
        best = max(best, valid_score) if bigger else min(best, valid_score)
        tune.report({"valid_score": valid_score, "best_valid_score": best, "epochs_run": epoch_idx + 1,
                     "resumed_after_epochs": resumed_after,
                     **{f"valid/{k}": float(v) for k, v in valid_result.items()}},
                    checkpoint=tune.Checkpoint.from_directory(saved))

    try:
        result = run(model, dataset, config_file_list=config_files or None,
                     config_dict={**config, "checkpoint_dir": saved}, cmd_args=fixed_args,
                     epoch_callback=report_epoch, resume=resume)
    finally:
        shutil.rmtree(saved, ignore_errors=True)
    tune.report({"valid_score": float(result["best_valid_score"]),
                 "best_valid_score": float(result["best_valid_score"]),
                 "epochs_run": result["epochs_run"], "tested": True, "resumed_after_epochs": resumed_after,
                 **{f"test/{k}": float(v) for k, v in result["test_result"].items()}})


def _plain(value):
    """yaml-friendly value (numpy scalars -> Python)."""
    return value.item() if hasattr(value, "item") else value


def _rows(result_grid, param_names, max_epochs):
    rows = []
    for result in result_grid:
        metrics = result.metrics or {}
        row = {name: _plain((result.config or {}).get(name)) for name in param_names}
        row["best_valid"] = metrics.get("best_valid_score")
        row["epochs_run"] = metrics.get("epochs_run", 0)
        row["resumed_after_epochs"] = metrics.get("resumed_after_epochs", 0)  # from a checkpoint, by --resume
        tests = {k: v for k, v in metrics.items() if k.startswith("test/")}
        row.update(tests)
        if result.error is not None:
            message = str(result.error).strip().splitlines()
            row["status"] = "failed: " + (message[-1] if message else type(result.error).__name__)
        elif metrics.get("tested"):
            row["status"] = "completed" if row["epochs_run"] >= max_epochs else "early-stopped (patience)"
        else:
            row["status"] = "stopped by scheduler"
        row["trial"] = os.path.basename(result.path) if result.path else ""
        rows.append(row)
    return rows


def _write_tables(tune_dir, rows):
    columns = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with open(os.path.join(tune_dir, "results.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)

    def cell(value):
        if isinstance(value, float):
            return f"{value:.4f}"
        return "" if value is None else str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    with open(os.path.join(tune_dir, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def _write_best(tune_dir, rows, param_names, model, dataset, fixed_args, config_files, bigger=True):
    scored = [r for r in rows if r.get("best_valid") is not None and not r["status"].startswith("failed")]
    if not scored:
        return None
    best = (max if bigger else min)(scored, key=lambda r: r["best_valid"])
    config = {k: yaml.safe_load(v) for k, v in parse_cmd_args(fixed_args).items()}
    config.update({name: best[name] for name in param_names})
    header = (
        f"# best of {len(rows)} trials (valid {best['best_valid']:.4f}, trial {best['trial']})\n"
        f"# python run_recbole_mamba.py --model={model} --dataset={dataset} "
        f"--config_files=\"{' '.join(config_files + ['best.yaml'])}\"\n"
        "# every trial: its parameters: best valid score (epochs run, how it ended)\n"
    )
    for index, row in enumerate(rows, 1):
        values = ", ".join(f"{name}={row[name]}" for name in param_names)
        score = "-" if row.get("best_valid") is None else f"{row['best_valid']:.4f}"
        mark = "  <- best" if row is best else ""
        header += f"#   {index}: {values}: {score} ({row['epochs_run']} epochs, {row['status']}){mark}\n"
    path = os.path.join(tune_dir, "best.yaml")
    with open(path, "w") as f:
        f.write(header + yaml.safe_dump(config, sort_keys=True))
    return path


def default_num_samples(params):
    """The number of fixed trials for a space of ``trial`` lists, 1 for a space of grids only (each
    grid point is a trial already; Ray repeats the whole grid num_samples times), else 8 random
    samples."""
    points = trial_points(params)
    if points:
        return len(points)
    return 1 if all(p.kind == "grid" for p in params) else 8


def run_search(model, dataset, params_file, fixed_args=(), config_files=(), num_samples=None,
               scheduler="asha", max_concurrent=None, cpus_per_trial=1, gpus_per_trial=0,
               ray_address=None, resume=False, tune_dir=None, grace_period=1):
    """Run (or resume) a search; returns ``(tune_dir, rows)``. The space and the overrides are
    checked before Ray starts (:class:`SpaceError`, :class:`ConfigError`)."""
    params = load_space(params_file)
    points = trial_points(params)
    if num_samples is None:
        num_samples = default_num_samples(params)
    if points and num_samples != len(points):
        raise ConfigError(f"{params_file} fixes {len(points)} trials; --num_samples={num_samples} would "
                          f"{'sample more' if num_samples > len(points) else 'drop some'} (leave it out)")
    if not (isinstance(grace_period, int) and grace_period >= 1):
        raise ConfigError(f"--grace_period must be a positive integer, got {grace_period!r}")
    if scheduler not in SCHEDULERS:
        raise ConfigError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, got {scheduler!r}")
    fixed = parse_cmd_args(fixed_args)
    both = sorted(set(fixed) & {p.name for p in params})
    if both:
        raise SpaceError(f"{', '.join(both)} both searched in {params_file} and fixed on the command line")
    if "data_path" not in fixed:  # workers run elsewhere: give them an absolute path
        fixed["data_path"] = default_data_path()
    fixed["data_path"] = os.path.abspath(os.path.expanduser(fixed["data_path"]))
    fixed_args = [f"--{k}={v}" for k, v in fixed.items()]
    config_files = [os.path.abspath(p) for p in config_files]

    from recbole_mamba.config import RecboleMambaConfig

    probe = RecboleMambaConfig(model, dataset, config_file_list=config_files or None, cmd_args=fixed_args)
    max_epochs, metric = probe["epochs"], probe["valid_metric"]
    mode = "max" if probe["valid_metric_bigger"] else "min"

    if tune_dir is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        tune_dir = os.path.join("saved", "tune", f"{model}-{dataset}-{stamp}")
    tune_dir = os.path.abspath(tune_dir)
    experiment = os.path.join(tune_dir, EXPERIMENT)
    if not resume and os.path.isdir(experiment) and os.listdir(experiment):
        raise ConfigError(f"{tune_dir} already holds a search: continue it with --resume, "
                          f"or give another --tune_dir")
    os.makedirs(tune_dir, exist_ok=True)

    ray = start_ray(ray_address)
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    try:
        trainable = tune.with_parameters(
            _trial, model=model, dataset=dataset, config_files=config_files, fixed_args=fixed_args,
            bigger=probe["valid_metric_bigger"],
        )
        trainable = tune.with_resources(trainable, {"cpu": cpus_per_trial, "gpu": gpus_per_trial})
        if resume:
            if not tune.Tuner.can_restore(experiment):
                raise ConfigError(f"nothing to resume in {experiment}")
            tuner = tune.Tuner.restore(experiment, trainable, resume_errored=True)
        else:
            chosen = (ASHAScheduler(max_t=max_epochs + 1, grace_period=grace_period, reduction_factor=2)
                      if scheduler == "asha" else FIFOScheduler())
            tuner = tune.Tuner(
                trainable,
                param_space=to_ray(params),
                tune_config=tune.TuneConfig(
                    metric="best_valid_score", mode=mode, num_samples=num_samples, scheduler=chosen,
                    search_alg=BasicVariantGenerator(points_to_evaluate=points or None),
                    max_concurrent_trials=max_concurrent,
                ),
                run_config=tune.RunConfig(
                    name=EXPERIMENT, storage_path=tune_dir, verbose=1,
                    failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),  # the latest: what resume needs
                ),
            )
        grid = tuner.fit()
    finally:
        ray.shutdown()
    names = [p.name for p in params]
    rows = sorted(_rows(grid, names, max_epochs), key=lambda row: row["trial"])  # in the order sampled
    _write_tables(tune_dir, rows)
    _write_best(tune_dir, rows, names, model, dataset, fixed_args, config_files, probe["valid_metric_bigger"])
    print(f"{len(rows)} trials, valid metric {metric} ({mode}); results in {tune_dir}")
    return tune_dir, rows
