"""The store of one's own atomic ``.inter`` file on a first run: written a chunk at a time against
RecBole's loading, seconds and peak RSS side by side.

A generated ``.inter`` (``--rows`` interactions, 2,000 a user, items from a power law over
``--items`` integer tokens, rows in time order as a log is written) is turned into its store by
``interaction_store(config)`` in a fresh process, as a first run does (``interaction_store:
rebuild``), streamed and, at ``--recbole-rows`` only (it holds about 150 bytes an interaction),
through RecBole's loading. Each line: seconds, the process's peak RSS, its RSS after the imports
and the config, and the peak's bytes an interaction above that; then the growth of the streamed
peak per added interaction between the sizes (the target: at most 24 bytes).

``python benchmarks/bench_inter_store.py [--rows 8e6 32e6] [--recbole-rows 8e6] [--work DIR]``
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GIB = 1 << 30

CHILD = """
import json, sys, time
from recbole_mamba.config import RecboleMambaConfig
from recbole_mamba.data import store_dataset

def rss(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

data_path, name, mode = sys.argv[1:4]
config = RecboleMambaConfig("MambaRec", name, config_dict={
    "data_path": data_path, "train_mode": "all_positions", "interaction_store": "rebuild",
    "MAX_ITEM_LIST_LENGTH": 50, "show_progress": False})
if mode == "recbole":
    store_dataset.not_streamed = lambda *args: "measured through RecBole's loading"
before = rss("VmRSS:")
start = time.perf_counter()
store = store_dataset.interaction_store(config)
print(json.dumps({"seconds": time.perf_counter() - start, "peak": rss("VmHWM:"), "before": before,
                  "interactions": store.interactions, "items": len(store.item_tokens) - 1}))
"""


def generate(folder, name, rows, items, per_user=2_000, seed=0, chunk=4_000_000):
    """``folder/name/name.inter``: users of ``per_user`` rows, interleaved in time order."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    path = Path(folder) / name / f"{name}.inter"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    users = max(1, rows // per_user)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(b"user_id:token\titem_id:token\ttimestamp:float\n")
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            index = start + np.arange(n)
            scale = items ** 0.34 - 1
            item = np.minimum(((scale * rng.random(n) + 1) ** (1 / 0.34)).astype(np.int64), items)
            table = pa.table({"u": index % users, "i": item, "t": 1_600_000_000 + index.astype(np.float64)})
            pa_csv.write_csv(table, f, write_options=pa_csv.WriteOptions(include_header=False, delimiter="\t",
                                                                         quoting_style="none"))
    os.replace(tmp, path)
    return path


def measure(work, name, mode):
    out = subprocess.run([sys.executable, "-c", CHILD, str(work), name, mode], cwd=ROOT,
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=float, nargs="+", default=[8e6, 32e6])
    parser.add_argument("--recbole-rows", type=float, nargs="*", default=[8e6])
    parser.add_argument("--items", type=int, default=4_000_000)
    parser.add_argument("--work", default="/tmp/bench_inter_store")
    args = parser.parse_args()
    print(f"generated .inter files: 2,000 interactions a user, items from a power law over {args.items:,}; "
          f"{os.cpu_count()} CPUs")
    streamed = []
    for rows in sorted({int(r) for r in args.rows} | {int(r) for r in args.recbole_rows}):
        name = f"own{rows}"
        started = time.perf_counter()
        path = generate(args.work, name, rows, args.items)
        print(f"{rows:,} interactions: {path.stat().st_size / GIB:.2f} GiB of .inter "
              f"(generated in {time.perf_counter() - started:.0f} s)")
        modes = (["stream"] if rows in [int(r) for r in args.rows] else []) + \
                (["recbole"] if rows in [int(r) for r in args.recbole_rows] else [])
        for mode in modes:
            r = measure(args.work, name, mode)
            above = (r["peak"] - r["before"]) / r["interactions"]
            print(f"  {'streamed' if mode == 'stream' else 'RecBole loading':16s} {r['seconds']:6.1f} s, peak RSS "
                  f"{r['peak'] / GIB:.2f} GiB (imports and config {r['before'] / GIB:.2f}), {above:.1f} bytes an "
                  f"interaction above them; {r['interactions']:,} interactions, {r['items']:,} items")
            if mode == "stream":
                streamed.append((r["interactions"], r["peak"]))
    if len(streamed) > 1:
        (n0, p0), (n1, p1) = streamed[0], streamed[-1]
        print(f"streamed growth {n0:,} -> {n1:,}: {(p1 - p0) / (n1 - n0):.1f} bytes an added interaction "
              "(target <= 24)")


if __name__ == "__main__":
    main()
