"""Command line: ``python run_recbole_mamba.py [--model=M] [--dataset=D] [--config_files="a.yaml b.yaml"]
[--key=value ...]``, RecBole's ``run_recbole.py`` conventions.

Input errors (:class:`recbole_mamba.errors.InputError`: a bad option, model, dataset, file or
checkpoint) print one line and exit with status 2; any other exception keeps its traceback."""

import os
import signal
import sys
from pathlib import Path

from recbole_mamba.allocator import keep_large_allocations
from recbole_mamba.train_modes import ALL_POSITIONS, ALL_POSITIONS_ABOVE, AUTO
from recbole_mamba.config import (
    CHOICES,
    EMBEDDED_DATASET,
    ConfigError,
    available_datasets,
    default_data_path,
    parse_cmd_args,
)
from recbole_mamba.distributed.context import DistributedContext
from recbole_mamba.distributed.launch import ForkedRanks
from recbole_mamba.errors import InputError, RankLostError
from recbole_mamba.registry import model_names

DEFAULT_MODEL = "MambaRec"
MAIN_OPTIONS = [
    ("model", f"model name (default {DEFAULT_MODEL})"),
    ("dataset", f"dataset name (default {EMBEDDED_DATASET})"),
    ("config_files", 'space-separated yaml files, e.g. --config_files="a.yaml b.yaml"'),
    ("epochs", "maximum training epochs (early stopping on valid_metric)"),
    ("train_batch_size", "training batch size"),
    ("learning_rate", "Adam learning rate"),
    ("MAX_ITEM_LIST_LENGTH", "context length: the last N items of each user"),
    ("train_mode", f"{' | '.join(CHOICES['train_mode'])} ({AUTO}: {ALL_POSITIONS} above length "
                   f"{ALL_POSITIONS_ABOVE})"),
    ("hidden_size / n_layers / dropout_prob", "model size and regularisation"),
    ("mamba_backend", f"{' | '.join(CHOICES['mamba_backend'])} (selective-scan backend)"),
    ("eval_args", "e.g. \"{'mode': 'uni100'}\" for 100 sampled negatives (default full ranking)"),
    ("loss_type", "CE (exact softmax, in item chunks) | SSM (sampled softmax) | GBCE | BPR | BCE, for every model"),
    ("check_memory", "estimate peak memory before training and refuse a run that cannot fit (default True)"),
    ("data_path", f"folder of converted datasets (default {default_data_path()})"),
    ("use_gpu / gpu_id", "device selection, as in RecBole"),
    ("show_progress", "progress bars (True/False)"),
]
DISTRIBUTED_OPTIONS = [
    ("nproc", "train on N ranks of this machine (CPU; forks once the data is loaded; gloo)"),
    ("world_size / ip / port / offset", "several machines: ranks in all, rank 0's address and port, the first "
                                        "rank on this one"),
    ("ray_workers", "train on N workers of a Ray cluster (Ray Train; gloo on CPUs, NCCL on GPUs)"),
    ("cpus_per_worker / gpus_per_worker", "Ray Train: resources of each worker (default 1 / 0; threads = cpus)"),
    ("ray_address / ray_storage", "Ray Train: the cluster (default: start Ray locally) and Ray's run records "
                                  "(default saved/ray_train; shared storage on a cluster)"),
    ("dist_timeout", "seconds a collective waits for a rank alive but stuck (default 1800)"),
]
EVALUATE_OPTIONS = [
    ("evaluate", "evaluate a trained model instead of training one (a bare flag)"),
    ("checkpoint", "with --evaluate: a checkpoint written by training (saved/<model>-<time>.pth)"),
]
RESUME_OPTIONS = [
    ("resume", "continue an interrupted training run after its last evaluated epoch (a bare flag)"),
    ("checkpoint", "its resume state saved/<model>-<time>-last.pth, its best checkpoint, or their folder"),
]
RECOMMEND_OPTIONS = [
    ("recommend", "write the top k items of every user of the training data (a bare flag)"),
    ("checkpoint", "the trained model's checkpoint"),
    ("users", "a file of user tokens, one per line (default: every user)"),
    ("k", "items per user (default 10)"),
    ("out", "the CSV to write: user_id, rank, item_id, score (default recs.csv)"),
    ("exclude_seen", "leave out items the user already has (True/False, default False)"),
    ("batch_size", "users scored at once (default 256)"),
    ("device", "cpu (default) or cuda"),
]
TUNE_OPTIONS = [
    ("tune", "run a Ray Tune search instead of one training (a bare flag)"),
    ("params_file", "search space: yaml (properties/tune/<Model>.yaml) or a RecBole hyper file"),
    ("num_samples", "trials to sample (default 8; 1 for a space of grids only, grids multiply; "
                    "a space of 'trial' lists runs its trials)"),
    ("scheduler", "asha (default) or fifo"),
    ("grace_period", "asha: epochs every trial runs before it can be stopped (default 1)"),
    ("max_concurrent", "trials at once (default: as resources allow)"),
    ("cpus_per_trial / gpus_per_trial", "resources of each trial (default 1 / 0)"),
    ("ray_address", "connect to a Ray cluster, e.g. auto (default: start Ray locally)"),
    ("tune_dir", "output folder (default saved/tune/<model>-<dataset>-<time>/)"),
    ("resume", "continue the search in --tune_dir (a bare flag)"),
]
EXPERIMENT_OPTIONS = [
    ("experiment", "an experiment yaml, or a shipped one by name: quick, kuairand, lfm1b"),
    ("out", "output folder (default experiments/<name>/); a re-run skips finished cells"),
    ("resume", "continue the experiment stored in --out (a bare flag; --experiment not needed)"),
    ("max_concurrent", "cells at once (default: as resources allow)"),
    ("cpus_per_cell / gpus_per_cell", "resources of each cell (default 1 / 0; threads = cpus)"),
    ("ray_address", "connect to a Ray cluster, e.g. auto (default: start Ray locally)"),
]
FLAGS = ("tune", "resume", "evaluate", "recommend")


def _option_lines(options):
    return "\n".join(
        f"  --{name}{'' if name in FLAGS else '=...'}".ljust(42) + f" {text}" for name, text in options
    )


def usage():
    plugin, recbole_models = model_names()
    options = _option_lines(MAIN_OPTIONS)
    distributed_options = _option_lines(DISTRIBUTED_OPTIONS)
    evaluate_options = _option_lines(EVALUATE_OPTIONS)
    recommend_options = _option_lines(RECOMMEND_OPTIONS)
    resume_options = _option_lines(RESUME_OPTIONS)
    tune_options = _option_lines(TUNE_OPTIONS)
    experiment_options = _option_lines(EXPERIMENT_OPTIONS)
    return (
        "usage: python run_recbole_mamba.py [--model=NAME] [--dataset=NAME] "
        '[--config_files="a.yaml b.yaml"] [--key=value ...]\n\n'
        "Trains a sequential recommender with RecBole and prints the best validation and the test "
        "metrics.\nAny RecBole config key can be given as --key=value (highest priority), after "
        "the yaml files.\n\n"
        f"plugin models:\n  {', '.join(plugin)}\n"
        f"RecBole sequential models:\n  {', '.join(recbole_models)}\n"
        f"datasets (embedded {EMBEDDED_DATASET}, and folders of {default_data_path()}):\n"
        f"  {', '.join(available_datasets())}\n\n"
        f"main options:\n{options}\n\n"
        "one model on many processes (also: torchrun --nproc_per_node=N run_recbole_mamba.py ...; "
        f"docs/distributed.md):\n{distributed_options}\n\n"
        f"evaluation (python run_recbole_mamba.py --evaluate --checkpoint=PATH [--key=value]):\n"
        f"{evaluate_options}\n\n"
        f"resuming (python run_recbole_mamba.py --resume --checkpoint=PATH [--key=value]):\n"
        f"{resume_options}\n\n"
        f"recommendations (python run_recbole_mamba.py --recommend --checkpoint=PATH --out=recs.csv):\n"
        f"{recommend_options}\n\n"
        f"search (python run_recbole_mamba.py --tune --params_file=... [--key=value fixed for every "
        f"trial]):\n{tune_options}\n\n"
        f"experiment grid (python run_recbole_mamba.py --experiment=FILE [--key=value for every cell]):\n"
        f"{experiment_options}\n"
    )


def format_result(result, model, dataset):
    """The printed summary: one table of the test metrics, and the (best) validation metrics."""
    test = result["test_result"] or {}
    names, ks = [], []
    for key in test:
        name, _, k = key.partition("@")
        if name not in names:
            names.append(name)
        if k not in ks:
            ks.append(k)
    lines = [f"{model} on {dataset} — test, {result['protocol']}"]
    lines.append(" " * 8 + "".join(f"{'@' + k:>10}" for k in ks))
    for name in names:
        cells = "".join(f"{test.get(f'{name}@{k}', float('nan')):>10.4f}" for k in ks)
        lines.append(f"{name:<8}{cells}")
    label, valid = ("best valid", result["best_valid_result"]) if "best_valid_result" in result else (
        "valid", result["valid_result"])
    lines.append(f"{label}: " + ", ".join(f"{key} {value:.4f}" for key, value in (valid or {}).items()))
    if "training" in result:
        lines.append(f"trained with {result['training']}")
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(arg in ("-h", "--help") for arg in argv):
        print(usage())
        return 0
    try:
        return _main(argv)
    except InputError as e:
        print(f"run_recbole_mamba.py: error: {e}", file=sys.stderr)
        return 2
    except RankLostError as e:
        print(f"run_recbole_mamba.py: error: {e}", file=sys.stderr)
        return 1


def _main(argv):
    flags = {arg[2:] for arg in argv if arg[2:] in FLAGS}
    args = parse_cmd_args([arg for arg in argv if arg[2:] not in FLAGS])
    launch = _launch_options(args, flags)
    if "evaluate" in flags:
        return _evaluate(args)
    if "recommend" in flags:
        return _recommend(args)
    if "resume" in flags and "checkpoint" in args and "tune" not in flags and "experiment" not in args:
        return _resume(args, launch)
    if "experiment" in args or ("resume" in flags and "tune" not in flags):
        return _experiment(args, resume="resume" in flags)
    model = args.pop("model", DEFAULT_MODEL)
    dataset = args.pop("dataset", EMBEDDED_DATASET)
    config_files = args.pop("config_files", "").split()
    for path in config_files:
        if not os.path.isfile(path):
            raise ConfigError(f"config file not found: {path}")
    keep_large_allocations()
    if "tune" in flags:
        return _tune(model, dataset, config_files, args, resume="resume" in flags)
    return _train(launch, model, dataset, config_file_list=config_files or None,
                  cmd_args=[f"--{key}={value}" for key, value in args.items()])


def _resume(args, launch):
    """``--resume --checkpoint=PATH``: continue an interrupted run after its last evaluated epoch."""
    checkpoint = args.pop("checkpoint")
    if not os.path.exists(checkpoint):
        raise ConfigError(f"checkpoint not found: {checkpoint}")
    keep_large_allocations()
    return _train(launch, None, None, resume=checkpoint, cmd_args=[f"--{key}={value}" for key, value in args.items()])


RAY_TRAIN_OPTIONS = {"ray_workers": int, "cpus_per_worker": float, "gpus_per_worker": float, "ray_address": str,
                     "ray_storage": str}


def _launch_options(args, flags):
    """The launch options popped from ``args``: {} for one process; ``nproc`` ... for forked ranks,
    ``ray_workers`` ... for Ray Train; refused where the mode runs in one process, or where torchrun
    already made this process a rank."""
    if "local_rank" in args:
        raise ConfigError("local_rank is set by a launcher, not given: use --nproc=N or torchrun")
    launch = {key: _take(args, key, int) for key in ("nproc", "world_size", "port", "offset") if key in args}
    if "ip" in args:
        launch["ip"] = args.pop("ip")
    if "ray_workers" in args:
        launch.update({key: _take(args, key, convert) for key, convert in RAY_TRAIN_OPTIONS.items() if key in args})
    elif launch.get("nproc", 1) == 1 and launch.get("world_size", 1) == 1:
        launch = {}  # RecBole's default nproc 1: one process
    one_process = sorted(flags & {"evaluate", "recommend", "tune"}) or (["experiment"] if "experiment" in args else [])
    if launch and one_process:
        raise ConfigError(f"--{one_process[0]} runs in this process: no --{next(iter(launch))}")
    if launch and DistributedContext.from_env() is not None:
        raise ConfigError(f"this process is already a rank of torchrun's (RANK, WORLD_SIZE): no --{next(iter(launch))}")
    return launch


def _train(launch, model, dataset, **run_args):
    """Train (or resume) as ``launch`` says, and print the result table on rank 0."""
    if "ray_workers" in launch:
        return _ray_train(launch, model, dataset, **run_args)
    from recbole_mamba.quick_start import run

    ranks = None
    if "nproc" in launch or "world_size" in launch:
        ranks = ForkedRanks(launch.get("nproc", 1), launch.get("world_size"), launch.get("ip"), launch.get("port"),
                            launch.get("offset", 0))
    interrupts = _Interrupts()
    try:
        result = run(model, dataset, distributed=ranks, **run_args)
    except BaseException as error:
        interrupts.stopped = True
        interrupted = isinstance(error, KeyboardInterrupt) or interrupts.seen  # a peer's Ctrl-C looks like a loss
        if ranks is not None:
            ranks.failed(error, quietly=interrupted)  # a child exits here
        if not interrupted:
            raise
        resume_file = getattr(error, "resume_file", None)
        print("run_recbole_mamba.py: interrupted: " + (
            f"continue after the last completed epoch with: python run_recbole_mamba.py --resume "
            f"--checkpoint={resume_file}" + (f" --nproc={ranks.nproc}" if ranks is not None else "")
            if resume_file else "no epoch was completed, nothing to resume"), file=sys.stderr)
        return 130
    finally:
        interrupts.restore()
    if result["rank"] == 0:
        config = result["config"]
        print(format_result(result, config["model"], config["dataset"]))
    return ranks.finish(0) if ranks is not None else 0


class _Interrupts:
    """From its making until :meth:`restore`: Ctrl-C (SIGINT) raises KeyboardInterrupt as Python's
    own handler does, and is remembered (``seen``), also where it arrived while a collective waited
    and the rank's peer, hit by the same Ctrl-C, was gone first; once ``stopped``, a Ctrl-C only
    counts. Where SIGINT was not Python's to handle (ignored by the shell), nothing changes."""

    def __init__(self):
        self.seen, self.stopped, self.previous = False, False, None
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.previous = signal.signal(signal.SIGINT, self)

    def __call__(self, signum, frame):
        self.seen = True
        if not self.stopped:
            raise KeyboardInterrupt

    def restore(self):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _ray_train(launch, model, dataset, cmd_args=(), config_file_list=None, resume=None):
    """``--ray_workers=N``: the run on Ray Train's workers; the table from rank 0's result."""
    from recbole_mamba.ray_train import run_on_ray

    if "nproc" in launch or "world_size" in launch:
        raise ConfigError("--ray_workers starts its own ranks: no --nproc or --world_size")
    summary = run_on_ray(model, dataset, config_files=config_file_list, cmd_args=cmd_args,
                         workers=launch["ray_workers"], cpus_per_worker=launch.get("cpus_per_worker", 1),
                         gpus_per_worker=launch.get("gpus_per_worker", 0), ray_address=launch.get("ray_address"),
                         storage=launch.get("ray_storage"), resume=resume)
    print(format_result(summary, summary["model"], summary["dataset"]))
    return 0


def _checkpoint_option(args, flag):
    """The ``--checkpoint=PATH`` that ``--flag`` needs, an existing file."""
    checkpoint = args.pop("checkpoint", None)
    if checkpoint is None:
        raise ConfigError(f"--{flag} needs --checkpoint=PATH (a checkpoint written by training)")
    if not os.path.isfile(checkpoint):
        raise ConfigError(f"checkpoint not found: {checkpoint}")
    return checkpoint


def _evaluate(args):
    """``--evaluate --checkpoint=PATH``: rebuild the run from its checkpoint and print its table."""
    checkpoint = _checkpoint_option(args, "evaluate")
    from recbole_mamba.quick_start import load_run

    result = load_run(checkpoint, cmd_args=[f"--{key}={value}" for key, value in args.items()])
    config = result["config"]
    print(format_result(result, config["model"], config["dataset"]))
    return 0


def _recommend(args):
    """``--recommend --checkpoint=PATH``: the top k items of every (or every listed) user to CSV."""
    checkpoint = _checkpoint_option(args, "recommend")
    users = None
    if "users" in args:
        path = args.pop("users")
        if not os.path.isfile(path):
            raise ConfigError(f"users file not found: {path}")
        with open(path, encoding="utf-8") as f:
            users = [line.strip() for line in f if line.strip()]
    k, batch_size = _int_option(args, "k", 10), _int_option(args, "batch_size", 256)
    exclude_seen = args.pop("exclude_seen", "False")
    if exclude_seen not in ("True", "False"):
        raise ConfigError(f"exclude_seen must be True or False, got {exclude_seen!r}")
    out, device = args.pop("out", "recs.csv"), args.pop("device", "cpu")
    if args:
        raise ConfigError(f"--recommend takes no --{next(iter(args))}")
    from recbole_mamba.serve import load

    rec = load(checkpoint, device=device)
    written = rec.write_recommendations(out, users, k=k, exclude_seen=exclude_seen == "True", batch_size=batch_size)
    print(f"wrote the top {k} items of {written} users to {out}")
    return 0


def _int_option(args, name, default):
    value = args.pop(name, None)
    if value is None:
        return default
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _take(args, name, convert=str, default=None):
    """Pop ``--name`` from ``args``, converted."""
    value = args.pop(name, None)
    if value is None:
        return default
    try:
        return convert(value)
    except ValueError:
        kind = {int: "an integer", float: "a number"}[convert]
        raise ConfigError(f"{name} must be {kind}, got {value!r}") from None


def _experiment(args, resume):
    """``--experiment=FILE``: run the grid's unfinished cells, print where the tables are."""
    import yaml

    from recbole_mamba.experiment import load_experiment, run_experiment

    path = args.pop("experiment", None)
    options = dict(
        out=_take(args, "out"),
        max_concurrent=_int_option(args, "max_concurrent", None),
        cpus_per_cell=_take(args, "cpus_per_cell", float, 1),
        gpus_per_cell=_take(args, "gpus_per_cell", float, 0),
        ray_address=_take(args, "ray_address"),
    )
    for name in ("model", "dataset", "config_files"):
        if name in args:
            raise ConfigError(f"--experiment takes no --{name}: the experiment yaml names them")
    overrides = {key: yaml.safe_load(value) for key, value in args.items()}
    experiment = load_experiment(path, overrides) if path else None
    if experiment is None and overrides:
        raise ConfigError("--resume continues the stored experiment as it was: no --key=value overrides")
    try:
        out, rows = run_experiment(experiment, resume=resume, **options)
    except KeyboardInterrupt:
        print("interrupted: the finished cells are kept; run the same command again (or --resume --out=...) "
              "to finish the rest", file=sys.stderr)
        return 130
    print(Path(out, "results.md").read_text())
    print(f"results: {out} (results.csv, results.md, efficiency.md, datasets.md, plots/)")
    return 0


def _tune(model, dataset, config_files, args, resume):
    from recbole_mamba.tune.search import run_search

    if "params_file" not in args:
        raise ConfigError("--tune needs --params_file=SPACE.yaml (see properties/tune/)")
    options = dict(
        params_file=_take(args, "params_file"),
        num_samples=_int_option(args, "num_samples", None),
        scheduler=_take(args, "scheduler", str, "asha"),
        grace_period=_int_option(args, "grace_period", 1),
        max_concurrent=_int_option(args, "max_concurrent", None),
        cpus_per_trial=_take(args, "cpus_per_trial", float, 1),
        gpus_per_trial=_take(args, "gpus_per_trial", float, 0),
        ray_address=_take(args, "ray_address"),
        tune_dir=_take(args, "tune_dir"),
    )
    fixed = [f"--{key}={value}" for key, value in args.items()]
    tune_dir, rows = run_search(model, dataset, fixed_args=fixed, config_files=config_files,
                                resume=resume, **options)
    print(Path(tune_dir, "results.md").read_text())
    print(f"results: {tune_dir}")
    return 0
