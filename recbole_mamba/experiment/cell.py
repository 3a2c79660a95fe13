"""One cell of an experiment, in a process of its own (so that its peak memory is its own and a
crash or an out-of-memory kill takes nothing else down).

:func:`execute_cell` (what a Ray worker runs) writes the cell into a fresh folder and starts
``python -m recbole_mamba.experiment.cell FOLDER``, which trains with early stopping on the first
protocol's validation metric, tests once, evaluates the same checkpoint under the other
protocols and writes ``metrics.json``: ``status`` done, failed or oom (with ``error``), the
metrics per protocol, and the costs (parameters, epochs, seconds per training epoch, validation
and test seconds, time to the best epoch, peak memory: CUDA max allocated on a GPU, else the
process's peak RSS). The folder is temporary: the log and the metrics go back to the caller,
which may be on another machine.
"""

import ctypes
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

import yaml

from recbole_mamba.files import atomic_open

OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory")
CELL_FILE, CONFIG_FILE, METRICS_FILE, LOG_FILE = "cell.json", "config.yaml", "metrics.json", "log.txt"


def is_out_of_memory(error):
    """Whether an exception says memory ran out (torch's CUDA/CPU allocators, MemoryError)."""
    return (isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError"
            or any(marker in str(error).lower() for marker in OOM_MARKERS))


def _peak_memory():
    """(MiB, what was measured)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return torch.cuda.max_memory_allocated() / 2**20, "CUDA max allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak RSS"  # Linux: KiB


def _device(config):
    import torch

    if config["device"].type == "cuda":
        return torch.cuda.get_device_name(config["device"])
    name = "CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    threads = torch.get_num_threads()
    return f"{name}, {threads} thread{'s' * (threads != 1)}"


def _plain(result):
    return {key: float(value) for key, value in (result or {}).items()}


def _train_and_test(cell, folder):
    from recbole_mamba.quick_start import load_run, run
    from recbole_mamba.trainer.resume import resume_files

    saved = os.path.join(folder, "saved")  # an interrupted run of this cell left its state there
    result = run(cell["model"], cell["dataset"], config_file_list=[os.path.join(folder, CONFIG_FILE)],
                 config_dict={"show_progress": False}, saved=True, resume=saved if resume_files(saved) else None)
    config = result["config"]
    protocols = cell["protocols"]
    evaluations = {protocols[0]: {"protocol": result["protocol"], "valid": _plain(result["best_valid_result"]),
                                  "test": _plain(result["test_result"])}}
    for mode in protocols[1:]:
        again = load_run(result["checkpoint"], config_dict={
            "eval_args": {**config["eval_args"], "mode": mode}, "show_progress": False})
        evaluations[mode] = {"protocol": again["protocol"], "valid": _plain(again["valid_result"]),
                             "test": _plain(again["test_result"])}
    best = result["best_evaluation"] or {}
    valid_seconds = [e["valid_s"] for e in result["evaluations"]]
    return {
        "evaluations": evaluations,
        "training": result["training"],
        "valid_metric": config["valid_metric"],
        "parameters": result["parameters"],
        "epochs": result["epochs_run"],
        "best_epoch": best["epoch"] + 1 if best else None,
        "train_s_per_epoch": statistics.fmean(result["train_seconds"]) if result["train_seconds"] else None,
        "valid_s_per_epoch": statistics.fmean(valid_seconds) if valid_seconds else None,
        "test_s": result["test_seconds"],
        "time_to_best_s": best.get("elapsed_s"),
        "dataset_stats": result["dataset_stats"],
        "device": _device(config),
    }


def run_cell(folder):
    """Run the cell described in ``folder`` (this process: the child) and write its metrics."""
    with open(os.path.join(folder, CELL_FILE), encoding="utf-8") as f:
        cell = json.load(f)
    import torch

    torch.set_num_threads(cell["threads"])
    metrics = {"status": "done", "error": None}
    start = time.perf_counter()
    try:
        metrics.update(_train_and_test(cell, folder))
    except Exception as error:  # recorded: the grid goes on
        traceback.print_exc()
        message = str(error).strip().splitlines()
        metrics["status"] = "oom" if is_out_of_memory(error) else "failed"
        metrics["error"] = f"{type(error).__name__}: {message[-1] if message else ''}".rstrip(": ")
    metrics["wall_s"] = time.perf_counter() - start
    metrics["peak_memory_mb"], metrics["memory_kind"] = _peak_memory()
    with atomic_open(os.path.join(folder, METRICS_FILE)) as f:
        json.dump(metrics, f, indent=1)


def _die_with_parent():
    """In the child, before exec: be killed when the worker that started it dies (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _written(folder, name, text):
    """Whether ``folder/name`` holds ``text`` already."""
    try:
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            return f.read() == text
    except OSError:
        return False


def execute_cell(model, dataset, config, protocols, threads, work_name):
    """Run one cell in a child process; returns ``{"metrics": dict, "log": str}``. A child that
    dies without writing its metrics is recorded as failed, or as oom when it was killed with
    SIGKILL (the kernel's out-of-memory killer). The child works in
    ``<tmp>/recbole-mamba-cells/<work_name>`` (its log and checkpoints), removed once the cell has
    its metrics. A run of the grid interrupted before that (Ctrl-C, a lost worker) leaves it: the
    next run of the same cell, with the same config, resumes from its last evaluated epoch."""
    folder = os.path.join(tempfile.gettempdir(), "recbole-mamba-cells", work_name)
    cell_text = json.dumps({"model": model, "dataset": dataset, "protocols": protocols, "threads": threads})
    config_text = yaml.safe_dump(config, sort_keys=True)
    resuming = _written(folder, CELL_FILE, cell_text) and _written(folder, CONFIG_FILE, config_text)
    if not resuming:
        shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder, exist_ok=True)
    finished = False
    try:
        with atomic_open(os.path.join(folder, CELL_FILE)) as f:
            f.write(cell_text)
        with atomic_open(os.path.join(folder, CONFIG_FILE)) as f:
            f.write(config_text)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        with open(os.path.join(folder, LOG_FILE), "a" if resuming else "w", encoding="utf-8") as log:
            proc = subprocess.run([sys.executable, "-m", "recbole_mamba.experiment.cell", folder], cwd=folder,
                                  stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent,
                                  check=False)
        with open(os.path.join(folder, LOG_FILE), encoding="utf-8", errors="replace") as f:
            log_text = f.read()
        try:
            with open(os.path.join(folder, METRICS_FILE), encoding="utf-8") as f:
                metrics = json.load(f)
        except FileNotFoundError:
            killed = proc.returncode == -signal.SIGKILL
            metrics = {"status": "oom" if killed else "failed",
                       "error": "killed by SIGKILL (the kernel's out-of-memory killer?)" if killed
                       else f"the cell's process exited with status {proc.returncode} and no metrics"}
        finished = True
        return {"metrics": metrics, "log": log_text}
    finally:
        if finished:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    run_cell(sys.argv[1])
