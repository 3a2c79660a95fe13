"""The study's data shape at growing size, through the user's own commands: seconds and peak RSS of
every stage, and how they grow with the number of users.

For each size, a generated KuaiRand-shaped log (``--rows-per-user`` raw rows a user, half of them
clicks, videos drawn from a power law over ``--videos``) is converted with the converter's command
(``python -m recbole_mamba.atomics kuairand LOG --max-len L+3``), then each model is trained for
one epoch and evaluated on valid and test with ``python run_recbole_mamba.py`` under full ranking
and under a sampled protocol, with a sampled-softmax loss (``--loss_type=SSM``). Each command runs
in its own process; the parent polls its resident memory every 0.1 s and splits the run into
stages by its log lines (load and build, the estimate, one training epoch, valid, test). The
run's own estimate of its peak memory (logged before training) is printed beside the measured
peak. Then the growth between sizes (the target: 4x users costs at most 4.4x time and memory).

The converter writes the interaction store, which the runs read (``interaction_store: auto``;
``--extra=--interaction_store=off`` loads the atomic files instead); the time to open it and build
the dataset on it in a fresh process is printed after each conversion, and the growth of peak RSS
per added interaction between sizes (the target: at most 24 bytes).

``python benchmarks/bench_scale.py [--users 250 1000 4000] [--models MambaRec SASRec]
[--modes full uni100] [--work DIR]`` (logs and datasets are kept in ``--work`` and reused);
``--preset kuairand-27k``: the study's KuaiRand-27K cut at 2,003 (27,000 users, a power law over
32 M videos, MambaRec, uni100, sparse item-table updates).
"""

import argparse
import os
import re
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recbole_mamba.atomics.convert import KUAIRAND_COLUMNS  # noqa: E402

GIB = 1 << 30
STAGES = (  # stage name, the log line that ends it
    ("load and build", re.compile(r"estimated peak memory")),
    ("train epoch", re.compile(r"epoch 0 training")),
    ("valid", re.compile(r"epoch 0 evaluating")),
    ("test", re.compile(r"test result")),
)


def generate_log(path, users, rows_per_user=11_700, videos=4_370_000, exponent=0.66, seed=0, chunk_users=50):
    """A KuaiRand-shaped ``log_standard`` CSV: ``rows_per_user`` rows a user one minute apart, each a
    click with probability 1/2, videos from a bounded power law (density ~ rank^-exponent) over
    ``videos`` ids. The default shape gives KuaiRand-1K's 1.2 M distinct clicked videos a 1,000
    users cut at 2,003."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    rng = np.random.default_rng(seed)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write((",".join(KUAIRAND_COLUMNS) + "\n").encode())
        for start in range(0, users, chunk_users):
            ids = np.arange(start, min(users, start + chunk_users))
            n = len(ids) * rows_per_user
            scale = videos ** (1 - exponent) - 1
            video = np.minimum(((scale * rng.random(n) + 1) ** (1 / (1 - exponent))).astype(np.int64), videos)
            zeros = np.zeros(n, dtype=np.int8)
            cols = {c: zeros for c in KUAIRAND_COLUMNS}
            cols.update(user_id=np.repeat(ids, rows_per_user), video_id=video, date=20220408, tab=1,
                        time_ms=1_650_000_000_000 + np.tile(np.arange(rows_per_user, dtype=np.int64) * 60_000, len(ids)),
                        is_click=(rng.random(n) < 0.5).astype(np.int8))
            table = pa.table({c: np.broadcast_to(cols[c], n) for c in KUAIRAND_COLUMNS})
            pa_csv.write_csv(table, f, write_options=pa_csv.WriteOptions(include_header=False))
    os.replace(tmp, path)


class Watched:
    """Runs a command, polling its resident memory and timing the stages its stderr announces."""

    def __init__(self, command, stages=()):
        self.command, self.stages = command, list(stages)
        self.samples, self.marks, self.lines = [], [], []

    def run(self, cwd):
        start = time.monotonic()
        process = subprocess.Popen(self.command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        reader = threading.Thread(target=self._read, args=(process, start), daemon=True)
        reader.start()
        while process.poll() is None:
            rss = _rss(process.pid)
            if rss:
                self.samples.append((time.monotonic() - start, rss))
            time.sleep(0.1)
        reader.join()
        self.seconds = time.monotonic() - start
        self.returncode = process.returncode
        return self

    def _read(self, process, start):
        for line in process.stdout:
            self.lines.append(line)
            for name, pattern in self.stages:
                if pattern.search(line) and name not in dict(self.marks):
                    self.marks.append((name, time.monotonic() - start))

    def stage_table(self):
        """[(stage, seconds, peak RSS bytes)] in order."""
        rows, begin = [], 0.0
        for name, end in self.marks:
            peak = max((rss for t, rss in self.samples if begin <= t <= end),
                       default=max((rss for t, rss in self.samples if t <= end), default=0))  # a stage < 0.1 s
            rows.append((name, end - begin, peak))
            begin = end
        return rows

    @property
    def peak(self):
        return max((rss for _, rss in self.samples), default=0)


def _rss(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0


def estimate_of(lines):
    """The run's own estimate (GiB) from its log, or None."""
    for line in lines:
        match = re.search(r"estimated peak memory ([\d.]+) GiB", line)
        if match:
            return float(match.group(1))
    return None


STUDY_CELLS = (  # the study's largest cells (REFERENCE_STUDY.md): users, context length
    ("KuaiRand 2k", 27_285, 2000), ("KuaiRand 5k", 27_285, 5000), ("LFM-1b 5k", 120_322, 5000))
CATALOGUES = (1_000_000, 10_000_000, 32_000_000)  # items left after the cut (and --min-item-count)
MACHINES = (("this CPU", 24 * GIB, "cpu"), ("80 GB GPU", 80e9, "cuda"), ("141 GB GPU", 141e9, "cuda"))
CUDA_CONTEXT = 1 * GIB  # what CUDA and its libraries hold on a GPU beside the tensors (not measured here)


class MemoryModel:
    """Peak memory of a cell from its size, with coefficients measured here: the data's bytes per
    interaction and a base (the processes' load stage at two sizes), and per model the encoding's
    bytes per batch (the run's own probes, :class:`recbole_mamba.trainer.memory.RunMemory`); the
    rest (parameters, Adam, the loss and the ranking) from the estimate's formulas."""

    def __init__(self, loads, dataset, data_path, models, extra=(), hidden=64):
        (i1, v1, m1), (i2, v2, m2) = loads[0], loads[-1]  # (interactions, items, load-stage peak RSS)
        self.per_interaction = max(0.0, (m2 - m1 - (v2 - v1) * hidden * 4) / (i2 - i1))
        self.base = m1 - self.per_interaction * i1 - v1 * hidden * 4
        self.dataset, self.data_path, self.models, self.hidden = dataset, data_path, models, hidden
        self.extra = list(extra)  # the runs' --key=value overrides
        self._estimates = {}

    def _estimate(self, model, length, mode):
        """A RunMemory of ``model`` at ``length``, built on the smallest dataset."""
        key = (model, length, mode)
        if key not in self._estimates:
            from recbole.data import data_preparation

            from recbole_mamba.config import RecboleMambaConfig
            from recbole_mamba.data import create_dataset
            from recbole_mamba.trainer.all_positions import build_model
            from recbole_mamba.trainer.memory import RunMemory

            config = RecboleMambaConfig(model, self.dataset, config_dict={
                "data_path": self.data_path, "MAX_ITEM_LIST_LENGTH": length, "loss_type": "SSM",
                "eval_args": {"mode": mode}, "show_progress": False}, cmd_args=self.extra)
            train, _, _ = data_preparation(config, create_dataset(config))
            recommender = build_model(config.model_class, config, train._dataset)
            table = recommender.item_embedding.weight.numel() * 4
            others = sum(p.numel() * 4 for p in recommender.parameters()) - table
            self._estimates[key] = (RunMemory(config, recommender, "cpu", 0), others)
        return self._estimates[key]

    def peak(self, model, users, length, items, mode, device):
        """Estimated peak bytes of one cell on ``device`` ('cpu' or 'cuda')."""
        from recbole_mamba.trainer.memory import TRAINING_RUNTIME_BYTES, steps_peak

        estimate, others = self._estimate(model, length, mode)
        interactions = users * (length + 3)
        table = items * self.hidden * 4
        params = table + others
        train = estimate.train_bytes(max(1, estimate.config["train_batch_tokens"] // length), items)
        evaluation = estimate.eval_bytes(estimate.config["eval_batch_size"], items)
        update = 3 * (params - table if estimate.sparse_table else params)  # gradients, Adam's temporaries
        host = self.base + self.per_interaction * interactions + TRAINING_RUNTIME_BYTES
        # Adam's two moments, the best weights loaded for the test, and the parameters (on a CPU
        # in the host's measured memory)
        held = 3 * params + (host if device == "cpu" else params + CUDA_CONTEXT)
        return held + steps_peak(train, update, evaluation, device == "cpu")


def report_memory_model(memory_model, measured, models, modes):
    """Checks the model against the measured runs, then prints the study's cells."""
    print("\nmemory model against the measured runs (estimated / measured peak RSS):")
    for (users, label), (interactions, items, peak) in sorted(measured.items()):
        model, mode = label.split()
        guess = memory_model.peak(model, users, interactions // users - 3, items, mode, "cpu")
        print(f"  {users} users, {label}: {guess / GIB:.2f} / {peak / GIB:.2f} GiB ({guess / peak:.2f})")
    print(f"\nthe study's cells (users x (length + 3) interactions; data {memory_model.per_interaction:.0f} B an "
          f"interaction on the host; GPUs: tensors + {CUDA_CONTEXT / GIB:.0f} GiB for CUDA, not measured here):")
    for name, users, length in STUDY_CELLS:
        for items in CATALOGUES:
            cells = []
            for model in models:
                for mode in modes:
                    fits = [f"{memory_model.peak(model, users, length, items, mode, device) / GIB:.0f} GiB "
                            f"{'fits' if memory_model.peak(model, users, length, items, mode, device) <= size else 'no'}"
                            f" ({where})" for where, size, device in MACHINES]
                    cells.append(f"{model} {mode}: " + ", ".join(fits))
            print(f"  {name}, {items / 1e6:.0f} M items: " + "; ".join(cells))


OPEN_STORE = """
import sys, time
start = time.perf_counter()
from recbole_mamba.config import RecboleMambaConfig
from recbole_mamba.data import create_dataset
from recbole_mamba.data.store_dataset import interaction_store
imported = time.perf_counter()
config = RecboleMambaConfig("MambaRec", sys.argv[1], config_dict={"data_path": sys.argv[2], "MAX_ITEM_LIST_LENGTH": int(sys.argv[3]),
                                                                  "train_mode": "all_positions", "interaction_store": "on"})
configured = time.perf_counter()
store = interaction_store(config)
opened = time.perf_counter()
dataset = create_dataset(config)
dataset.build()  # the rows of every split
built = time.perf_counter()
print(f"{store.interactions} {opened - configured:.3f} {built - opened:.3f} {imported - start:.3f}")
"""


def time_open_store(name, data_path, length):
    """(interactions, seconds to open and check the store, seconds to build the dataset on it and
    split it into rows, seconds to import the plugin and RecBole) in a fresh process."""
    out = subprocess.run([sys.executable, "-c", OPEN_STORE, name, data_path, str(length)], cwd=ROOT, capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    count, opened, built, imported = out.stdout.split()[-4:]
    return int(count), float(opened), float(built), float(imported)


PRESETS = {  # the reference study's KuaiRand-27K cut at 2,003: 27,000 users, videos from a power law over 32 M ids
    "kuairand-27k": {"users": [27_000], "rows_per_user": 4_200, "videos": 32_000_000, "models": ["MambaRec"],
                     "modes": ["uni100"], "extra": ["--item_table_updates=sparse"]},
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), help="a study shape: sets the options below")
    parser.add_argument("--users", type=int, nargs="+", default=[250, 1000, 4000])
    parser.add_argument("--rows-per-user", type=int, default=11_700)
    parser.add_argument("--videos", type=int, default=4_370_000)
    parser.add_argument("--length", type=int, default=2000, help="MAX_ITEM_LIST_LENGTH (converted at +3)")
    parser.add_argument("--models", nargs="+", default=["MambaRec", "SASRec"])
    parser.add_argument("--modes", nargs="+", default=["full", "uni100"])
    parser.add_argument("--extra", nargs="*", action="extend", default=[],
                        help="more --key=value for every run, each as --extra=--key=value")
    parser.add_argument("--work", default="/tmp/bench_scale")
    args = parser.parse_args()
    for key, value in PRESETS.get(args.preset, {}).items():
        setattr(args, key, value + args.extra if key == "extra" else value)  # --extra adds to the preset's
    warnings.filterwarnings("ignore")  # RecBole's pandas warnings, when the memory model loads a dataset here
    work = Path(args.work)
    (work / "atomics").mkdir(parents=True, exist_ok=True)
    results, loads, measured, interactions = {}, [], {}, {}
    print(f"KuaiRand-shaped logs: {args.rows_per_user:,} raw rows a user, power-law videos over {args.videos:,}; "
          f"MAX_ITEM_LIST_LENGTH {args.length}, one epoch, --loss_type=SSM; {os.cpu_count()} CPUs")
    for users in args.users:
        log = work / f"log_standard_u{users}.csv"
        if not log.exists():
            generate_log(log, users, args.rows_per_user, args.videos)
        name = f"kuairand-u{users}"
        convert = Watched([sys.executable, "-m", "recbole_mamba.atomics", "kuairand", str(log), "--max-len",
                           str(args.length + 3), "--output-dir", str(work / "atomics"), "--name", name]).run(ROOT)
        if convert.returncode:
            sys.exit("".join(convert.lines[-5:]))
        stats = next((line for line in convert.lines if line.lstrip().startswith(name)), "").split()
        print(f"\n{users} users: convert {convert.seconds:.0f} s, peak RSS {convert.peak / GIB:.2f} GiB; "
              f"{' '.join(stats[1:4])} (users, items, interactions)")
        results[(users, "convert")] = (convert.seconds, convert.peak)
        n_items, n_interactions = (int(v.replace(",", "")) for v in stats[2:4])
        interactions[users] = n_interactions
        count, opened, built, imported = time_open_store(name, str(work / "atomics"), args.length)
        print(f"  store: {count:,} interactions, opened and checked in {opened:.2f} s, dataset built on it and "
              f"split into rows in {built:.2f} s (imports {imported:.1f} s)")
        for model in args.models:
            for mode in args.modes:
                run = Watched([sys.executable, str(ROOT / "run_recbole_mamba.py"), f"--model={model}",
                               f"--dataset={name}", f"--data_path={work / 'atomics'}",
                               f"--MAX_ITEM_LIST_LENGTH={args.length}", "--epochs=1", "--loss_type=SSM",
                               "--show_progress=False", f"--eval_args={{'mode': '{mode}'}}", *args.extra],
                              STAGES).run(work)
                label = f"{model} {mode}"
                if run.returncode:
                    print(f"  {label}: exit {run.returncode}: {run.lines[-1].strip() if run.lines else ''}")
                    continue
                stages = run.stage_table()
                results[(users, label)] = (run.seconds, run.peak)
                measured[(users, label)] = (n_interactions, n_items, run.peak)
                if model == args.models[0] and mode == args.modes[0]:
                    loads.append((n_interactions, n_items, stages[0][2]))
                estimate = estimate_of(run.lines)
                print(f"  {label}: {run.seconds:.0f} s, peak RSS {run.peak / GIB:.2f} GiB (its own estimate "
                      f"{estimate} GiB); " + ", ".join(f"{s} {sec:.0f} s / {peak / GIB:.2f} GiB"
                                                       for s, sec, peak in stages))
    sizes = sorted({u for u, _ in results})
    print("\ngrowth between sizes (time x, peak RSS x):")
    for small, large in zip(sizes, sizes[1:]):
        for label in sorted({lab for _, lab in results}):
            if (small, label) in results and (large, label) in results:
                (t0, m0), (t1, m1) = results[(small, label)], results[(large, label)]
                i0, i1 = interactions[small], interactions[large]
                print(f"  {label}: {large / small:.0f}x users ({small} -> {large}): time {t1 / t0:.2f}x, "
                      f"peak RSS {m1 / m0:.2f}x, {(m1 - m0) / max(1, i1 - i0):.1f} bytes more an added interaction")
    if len(loads) >= 2:
        memory_model = MemoryModel(loads, f"kuairand-u{sizes[0]}", str(work / "atomics"), args.models, args.extra)
        report_memory_model(memory_model, measured, args.models, args.modes)


if __name__ == "__main__":
    main()
