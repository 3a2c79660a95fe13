"""``--ray_workers=N``: the run of :func:`recbole_mamba.quick_start.run` on N workers of a Ray
cluster, through Ray Train's ``TorchTrainer`` (which makes the process group: gloo on CPU workers,
NCCL on GPU workers); each worker is one rank of :class:`~recbole_mamba.distributed.DistributedTrainer`.

The workers run in the driver's working directory where their machine has it (one machine, or a
shared file system), so that ``log/`` and relative paths are the driver's; the data path and the
checkpoint folder are made absolute before they are sent, and the checkpoint folder must be
storage that every worker sees (rank 0 writes, every rank reads), as Ray's ``storage_path``
(``--ray_storage``, for Ray's own run records) must be on a cluster of several machines.
"""

import json
import os
import re
import tempfile
from pathlib import Path

from recbole_mamba.distributed import DistributedContext
from recbole_mamba.errors import ConfigError, InputError, RankLostError
from recbole_mamba.tune.cluster import start_ray


def _absolute_paths(cmd_args):
    """``cmd_args`` with ``--data_path`` and ``--checkpoint_dir`` (default ``saved``) absolute."""
    values = dict(arg[2:].split("=", 1) for arg in cmd_args)
    values.setdefault("checkpoint_dir", "saved")
    for key in ("data_path", "checkpoint_dir"):
        if key in values:
            values[key] = os.path.abspath(os.path.expanduser(values[key]))
    return [f"--{key}={value}" for key, value in values.items()]


def _summary(result):
    """What :func:`~recbole_mamba.cli.format_result` prints of a run's result, as JSON."""
    def numbers(metrics):
        return None if metrics is None else {key: float(value) for key, value in metrics.items()}

    return json.dumps({
        "test_result": numbers(result["test_result"]),
        "best_valid_result": numbers(result["best_valid_result"]),
        "protocol": result["protocol"],
        "training": result["training"],
        "checkpoint": result["checkpoint"],
        "epochs_run": result["epochs_run"],
        "model": result["config"]["model"],
        "dataset": result["config"]["dataset"],
    })


def _worker(spec):
    """One Ray Train worker: its rank of the run."""
    import ray.train

    from recbole_mamba.quick_start import run

    if os.path.isdir(spec["cwd"]):
        os.chdir(spec["cwd"])
    ray_context = ray.train.get_context()
    context = DistributedContext(ray_context.get_world_rank(), ray_context.get_world_size(),
                                 ray_context.get_local_rank(), ray_context.get_local_world_size(),
                                 threads=spec["threads"])
    result = run(spec["model"], spec["dataset"], config_file_list=spec["config_files"], cmd_args=spec["cmd_args"],
                 resume=spec["resume"], distributed=context)
    # Ray Train keeps the metrics that come with a checkpoint (rank 0's): a folder of the summary
    with tempfile.TemporaryDirectory() as folder:
        summary = _summary(result)
        Path(folder, "summary.json").write_text(summary)
        checkpoint = ray.train.Checkpoint.from_directory(folder) if context.is_main else None
        ray.train.report({"summary": summary}, checkpoint=checkpoint)  # every worker: a barrier


def _cause(failure):
    """The worker's own exception in a rank's failure as Ray Train reports it."""
    for attribute in ("cause", "_base_exc", "__cause__"):
        inner = getattr(failure, attribute, None)
        if isinstance(inner, BaseException):
            return _cause(inner)
    return failure


def _failure_line(rank, failure):
    """One line for a rank of a failed Ray Train run: its own error's line where the run raised
    it (a lost peer), else how its worker ended (killed: a failed health check)."""
    cause = _cause(failure)
    if isinstance(cause, (RankLostError, InputError)):
        return str(cause)
    died = getattr(failure, "health_check_failure", None)
    if died is not None:
        pid = re.search(r"\bpid=(\d+)", str(failure))
        return f"rank {rank}{f' (pid {pid.group(1)})' if pid else ''}: its worker process died ({type(died).__name__})"
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return f"rank {rank}: {type(cause).__name__}: {lines[-1] if lines else ''}"


def _failed(error):
    """The one-line error of a Ray Train run whose ranks failed: an input error as it is, else a
    :class:`RankLostError` naming each failed rank."""
    failures = sorted(getattr(error, "worker_failures", {}).items())
    causes = [_cause(failure) for _, failure in failures]
    if causes and all(isinstance(cause, InputError) for cause in causes):
        return causes[0]
    if not failures:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        return RankLostError(f"Ray Train: {type(error).__name__}: {lines[-1] if lines else ''}")
    return RankLostError("Ray Train: " + "; ".join(_failure_line(rank, failure) for rank, failure in failures))


def run_on_ray(model, dataset, config_files=None, cmd_args=(), workers=2, cpus_per_worker=1, gpus_per_worker=0,
               ray_address=None, storage=None, resume=None):
    """Train on ``workers`` Ray workers (each ``cpus_per_worker`` CPUs, its threads, and
    ``gpus_per_worker`` GPUs); returns the run's summary: test and best validation metrics,
    protocol, training, checkpoint, epochs_run, model, dataset. The run's config is made here
    first: a bad key fails before Ray starts, and its ``dist_timeout`` is the process group's
    (which Ray Train makes)."""
    from recbole_mamba.config import RecboleMambaConfig

    if workers < 1 or cpus_per_worker < 1 or gpus_per_worker < 0:
        raise ConfigError(f"--ray_workers {workers}, --cpus_per_worker {cpus_per_worker}, --gpus_per_worker "
                          f"{gpus_per_worker}: at least one worker of at least one CPU")
    config = RecboleMambaConfig(model, dataset, config_file_list=config_files, cmd_args=list(cmd_args))
    start_ray(ray_address)
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    spec = dict(model=model, dataset=dataset, cwd=os.getcwd(), threads=int(cpus_per_worker),
                config_files=[os.path.abspath(path) for path in config_files or []] or None,
                cmd_args=_absolute_paths(cmd_args), resume=None if resume is None else os.path.abspath(resume))
    resources = {"CPU": cpus_per_worker, **({"GPU": gpus_per_worker} if gpus_per_worker else {})}
    trainer = TorchTrainer(
        _worker, train_loop_config=spec,
        torch_config=TorchConfig(backend="nccl" if gpus_per_worker else "gloo", timeout_s=config["dist_timeout"]),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=bool(gpus_per_worker),
                                     resources_per_worker=resources),
        run_config=RunConfig(storage_path=os.path.abspath(storage or os.path.join("saved", "ray_train"))),
    )
    from ray.train import TrainingFailedError

    try:
        result = trainer.fit()
    except TrainingFailedError as error:
        raise _failed(error) from None
    return json.loads(result.metrics["summary"])
