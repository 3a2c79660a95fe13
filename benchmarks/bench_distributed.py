"""One model on 2 ranks of this machine against 1 process, side by side in one run, through the
user's own commands: epoch time, summed memory (PSS) and the gradient a step exchanges.

A generated dataset of ``--users`` x ``--length`` interactions (about 2 M by default) is written
as atomic files and its interaction store (memory-mapped) built once; then MambaRec trains
``--epochs`` epochs on it with a sampled softmax, the same global batches each time:

1. one process, with this machine's threads (2 here): ``python run_recbole_mamba.py ...``;
2. ``--nproc=2``: 2 ranks forked once the data is loaded, a thread each (cores / ranks), gloo;
3. ``torchrun --standalone --nproc_per_node=2``: 2 independent ranks, each loading the data.

Each command runs in its own process tree; the parent sums the proportional set size (PSS:
shared pages split between the processes that map them) of the tree's ranks every 0.1 s, so that
pages the ranks share count once in the sum. Printed: each run's epoch time (its log's) and peak
summed PSS, the ratios to the 1-process run, and the dense gradient a step all-reduces (4 bytes a
trainable parameter) with the time a gloo all-reduce of that many bytes between 2 ranks takes
here (measured in a forked pair), then the communication model for k GPUs at the KuaiRand-27K
shape (a table of ``--catalogue`` items x ``--hidden`` floats; assumed bandwidths, not measured).

``python benchmarks/bench_distributed.py [--users 10000] [--length 200] [--items 20000]
[--epochs 1] [--work DIR]`` (the dataset is kept in ``--work`` and reused).
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCRIPT = ROOT / "run_recbole_mamba.py"
MIB = 1 << 20
ANSI = re.compile(r"\x1b\[[0-9;]*m")
EPOCH = re.compile(r"epoch (\d+) training \[time: ([\d.]+)s")
PARAMETERS = re.compile(r"Trainable parameters: (\d+)")
# all-reduce bus bandwidths assumed for the model (GB/s a GPU): NCCL's on NVLink 4 (H100 SXM),
# PCIe 5 x16 without NVLink, and 100 and 400 Gb/s networks between machines
BANDWIDTHS = (("NVLink 4, one machine", 400), ("PCIe 5, one machine", 50), ("400 Gb/s between machines", 45),
              ("100 Gb/s between machines", 11))


def tree(pid):
    """``pid`` and its descendants."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    todo.extend(int(child) for child in f.read().split())
        except OSError:
            pass
    return found


def memory(pid):
    """``pid``'s proportional set size (PSS: shared pages split between the processes that map
    them) with its anonymous and file-backed parts, and its private pages, in bytes (zeros once
    it is gone)."""
    fields = dict.fromkeys(("Pss", "Pss_Anon", "Pss_File", "Private_Clean", "Private_Dirty"), 0)
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in fields:
                    fields[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return fields


def is_rank(pid):
    """Whether ``pid`` runs the plugin's script (a rank), not a launcher (torchrun's agent)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            arguments = f.read().split(b"\0")
    except OSError:
        return False
    return any(arg.endswith(b"run_recbole_mamba.py") for arg in arguments) and b"torch.distributed.run" not in arguments


class Watched:
    """A command run to its end, the summed PSS of its ranks sampled every 0.1 s, its output kept."""

    def __init__(self, label, command):
        self.label, self.command = label, command
        self.peak, self.lines, self.at_peak = 0, [], {}

    def run(self, cwd):
        start = time.monotonic()
        process = subprocess.Popen(self.command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   env={**os.environ, "PYTHONWARNINGS": "ignore"})
        reader = threading.Thread(target=lambda: self.lines.extend(ANSI.sub("", line) for line in process.stdout),
                                  daemon=True)
        reader.start()
        while process.poll() is None:
            ranks = {pid: memory(pid) for pid in tree(process.pid) if is_rank(pid)}
            summed = sum(fields["Pss"] for fields in ranks.values())
            if summed > self.peak:
                self.peak, self.at_peak = summed, ranks
            time.sleep(0.1)
        reader.join()
        self.seconds = time.monotonic() - start
        if process.returncode:
            sys.exit(f"{self.label} failed ({process.returncode}):\n" + "".join(self.lines[-40:]))
        return self

    def epoch_seconds(self):
        return [float(m.group(2)) for line in self.lines for m in [EPOCH.search(line)] if m]

    def parameters(self):
        return next(int(m.group(1)) for line in self.lines for m in [PARAMETERS.search(line)] if m)


def prepare(work, users, length, items):
    """The dataset's atomic files and interaction store in ``work`` (reused when there)."""
    name = f"dist-{users}x{length}"
    if not (work / name / f"{name}.store").exists():
        from recbole_mamba.atomics.synthetic import write_synthetic

        write_synthetic(str(work), users=users, length=length, items=items, name=name)
        subprocess.run([sys.executable, "-c", (
            "import sys; from recbole_mamba.config import RecboleMambaConfig; "
            "from recbole_mamba.data import create_dataset; "
            f"create_dataset(RecboleMambaConfig('MambaRec', {name!r}, config_dict={{'data_path': {str(work)!r}, "
            f"'interaction_store': 'on', 'MAX_ITEM_LIST_LENGTH': {length}, 'train_mode': 'all_positions'}}))")],
            check=True, cwd=work, capture_output=True)
    return name


ALL_REDUCE = r"""
import sys, time, torch, torch.distributed as dist
from recbole_mamba.distributed import ForkedRanks
ranks = ForkedRanks(2)
context = ranks.fork("cpu").start("cpu")
gradient = torch.ones(int(sys.argv[1]))
times = []
for _ in range(6):
    dist.barrier()
    start = time.perf_counter()
    dist.all_reduce(gradient)
    times.append(time.perf_counter() - start)
if context.is_main:
    sys.stdout.write(f"{sorted(times[1:])[2]}\n")
context.stop()
raise SystemExit(ranks.finish(0))
"""


IMPORTS = r"""
import json
import torch, torch.distributed
import recbole_mamba.cli, recbole_mamba.quick_start, recbole_mamba.distributed.trainer, recbole_mamba.model
from recbole_mamba.ops import BACKENDS
BACKENDS["cpu"].unavailable()  # the C scan kernel, compiled or loaded as a run does
fields = {}
with open("/proc/self/smaps_rollup") as f:
    for line in f:
        key, _, value = line.partition(":")
        fields[key] = int(value.split()[0]) * 1024 if value.strip().endswith("kB") else 0
print(json.dumps(fields))
"""
MODEL_BYTES = 20  # a parameter: float32 weight, gradient, Adam's two moments, DDP's gradient bucket


def import_memory():
    """The memory of a process that has imported what a rank imports and done nothing else:
    smaps_rollup's fields in bytes (anonymous pages are its own; its libraries' file pages are
    shared with every other process that maps them)."""
    import json

    done = subprocess.run([sys.executable, "-c", IMPORTS], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def all_reduce_seconds(floats):
    """Median seconds of a gloo all-reduce of ``floats`` float32 between 2 forked ranks here."""
    done = subprocess.run([sys.executable, "-c", ALL_REDUCE, str(floats)], capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--catalogue", type=float, default=1e7, help="items of the modelled KuaiRand-27K table")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_distributed-"))
    work.mkdir(parents=True, exist_ok=True)
    name = prepare(work, args.users, args.length, args.items)
    run_args = [f"--dataset={name}", f"--data_path={work}", "--model=MambaRec", f"--hidden_size={args.hidden}",
                f"--MAX_ITEM_LIST_LENGTH={args.length}", "--train_mode=all_positions", "--interaction_store=on",
                "--loss_type=SSM", f"--epochs={args.epochs}", "--show_progress=False", "--eval_batch_size=256",
                "--eval_args={'mode': {'valid': 'uni100', 'test': 'uni100'}}"]
    print(f"{name}: {args.users * args.length / 1e6:.1f} M interactions, {args.items} items; MambaRec, hidden "
          f"{args.hidden}, L {args.length}, all positions, SSM; {os.cpu_count()} cores")
    runs = []
    for label, command in (
            ("1 process x 2 threads", [sys.executable, str(SCRIPT), *run_args]),
            ("--nproc=2 (forked) x 1 thread", [sys.executable, str(SCRIPT), *run_args, "--nproc=2"]),
            ("torchrun 2 ranks x 1 thread", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                             "--nproc_per_node=2", str(SCRIPT), *run_args])):
        with tempfile.TemporaryDirectory(dir=work) as cwd:
            runs.append(Watched(label, command).run(cwd))
        run = runs[-1]
        epochs = run.epoch_seconds()
        print(f"{label:<32} epoch {sum(epochs) / len(epochs):7.1f} s   peak summed PSS {run.peak / MIB:7.0f} MiB   "
              f"whole command {run.seconds:6.1f} s")
    one = runs[0]
    parameters = one.parameters()
    imports = import_memory()
    fixed = imports["Pss_Anon"] + MODEL_BYTES * parameters
    print(f"one rank's fixed cost: {fixed / MIB:.0f} MiB = interpreter and imports {imports['Pss_Anon'] / MIB:.0f} MiB "
          f"(the anonymous pages of a process that imported what a rank imports; its libraries' "
          f"{imports['Pss_File'] / MIB:.0f} MiB of file pages are shared by every rank) + model "
          f"{MODEL_BYTES * parameters / MIB:.0f} MiB ({parameters:,} parameters x {MODEL_BYTES} B: weight, "
          "gradient, Adam's 2 moments, DDP's bucket)")
    for run in runs:
        ranks = "; ".join(f"pid {pid} PSS {m['Pss'] / MIB:.0f} (anonymous {m['Pss_Anon'] / MIB:.0f}, file "
                          f"{m['Pss_File'] / MIB:.0f}), private {(m['Private_Clean'] + m['Private_Dirty']) / MIB:.0f}"
                          for pid, m in sorted(run.at_peak.items()))
        print(f"  at its peak, {run.label}: {ranks} MiB")
    one_epoch = sum(one.epoch_seconds()) / len(one.epoch_seconds())
    bound = 1.1 * (one.peak + fixed)
    for run in runs[1:]:
        epoch = sum(run.epoch_seconds()) / len(run.epoch_seconds())
        print(f"{run.label}: epoch time {epoch / one_epoch:.2f}x, summed PSS {run.peak / one.peak:.2f}x "
              f"the 1-process run; {run.peak / MIB:.0f} MiB against the target (1 process + one rank's fixed cost) "
              f"x 1.1 = {bound / MIB:.0f} MiB: {'met' if run.peak <= bound else 'NOT met'}")

    seconds = all_reduce_seconds(parameters)
    print(f"gradient a step: {parameters:,} trainable parameters = {4 * parameters / MIB:.1f} MiB (dense, float32); "
          f"a gloo all-reduce of it between 2 ranks here: {seconds * 1e3:.1f} ms")
    table = args.catalogue * args.hidden * 4
    print(f"model at the KuaiRand-27K shape: the item table alone, {args.catalogue:.0e} items x {args.hidden} floats = "
          f"{table / 1e9:.2f} GB of gradient a step; a ring all-reduce moves 2 (k-1)/k of it through each GPU "
          "(assumed bandwidths, not measured):")
    for where, bandwidth in BANDWIDTHS:
        cells = "  ".join(f"k={k}: {2 * (k - 1) / k * table / (bandwidth * 1e9) * 1e3:7.0f} ms" for k in (2, 4, 8))
        print(f"  {where:<28} ({bandwidth:>3} GB/s)  {cells}")


if __name__ == "__main__":
    main()
