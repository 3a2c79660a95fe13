"""Converter throughput and memory: generated raw LFM-1b / KuaiRand files of given sizes.

Items follow a Zipf law, users get long histories (the same users at every size, so a bigger file
means longer histories, as with the real dumps). Each conversion runs in a fresh process; prints
rows/s and peak RSS per size, and the RSS ratio largest/smallest (target: within 1.2 with
--max-len 2000). ``python benchmarks/bench_atomics.py [--rows 5e6 25e6] [--format lfm1b]``.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

from recbole_mamba.atomics.convert import KUAIRAND_COLUMNS


def generate(path, rows, fmt, users=2000, items=1_000_000, seed=0, chunk=2_000_000):
    """Write ``rows`` raw events; user ids interleave, timestamps increase with the row."""
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        if fmt == "kuairand":
            f.write(",".join(KUAIRAND_COLUMNS) + "\n")
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            user = rng.integers(0, users, n)
            item = np.minimum(rng.zipf(1.2, n), items)
            t = 1_200_000_000 + start + np.arange(n)
            if fmt == "lfm1b":
                frame = pd.DataFrame({"u": user, "ar": item // 100, "al": item // 10, "tr": item, "t": t})
                frame.to_csv(f, sep="\t", header=False, index=False)
            else:
                zeros = np.zeros(n, dtype=np.int64)
                cols = {c: zeros for c in KUAIRAND_COLUMNS}
                cols.update(user_id=user, video_id=item, time_ms=t * 1000,
                            is_click=rng.integers(0, 2, n), long_view=rng.integers(0, 2, n))
                pd.DataFrame(cols).to_csv(f, header=False, index=False)


def child(fmt, path, out, max_len):
    from recbole_mamba.allocator import return_large_allocations
    from recbole_mamba.atomics import convert_kuairand, convert_lfm1b

    return_large_allocations()  # as the command line does
    start = time.perf_counter()
    convert = convert_lfm1b if fmt == "lfm1b" else convert_kuairand
    stats = convert(path, output_dir=out, name="bench", max_len=max_len)
    elapsed = time.perf_counter() - start
    with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    print(json.dumps({"seconds": elapsed, "rows": stats["rows_read"], "peak_rss": hwm,
                      "kept": stats["interactions"]}))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=float, nargs="+", default=[5e6, 25e6])
    parser.add_argument("--format", choices=["lfm1b", "kuairand"], default="lfm1b")
    parser.add_argument("--max-len", type=int, default=2000)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], args.child[2], args.max_len)
    peaks = []
    with tempfile.TemporaryDirectory() as tmp:
        for rows in [int(r) for r in args.rows]:
            path = os.path.join(tmp, f"raw-{rows}.txt")
            generate(path, rows, args.format)
            out = subprocess.run(
                [sys.executable, __file__, "--child", args.format, path, os.path.join(tmp, "out"),
                 "--max-len", str(args.max_len)],
                check=True, capture_output=True, text=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            peaks.append(r["peak_rss"])
            print(f"{args.format} {rows:,} rows, --max-len {args.max_len}: {r['rows'] / r['seconds']:,.0f} "
                  f"rows/s (target >= 1,000,000), peak RSS {r['peak_rss'] / 2**20:,.0f} MiB, "
                  f"{r['kept']:,} kept, {os.path.getsize(path) / 2**20:,.0f} MiB input")
            os.unlink(path)
    print(f"peak RSS ratio largest/smallest input: {peaks[-1] / peaks[0]:.2f} (target <= 1.2)")


if __name__ == "__main__":
    main()
