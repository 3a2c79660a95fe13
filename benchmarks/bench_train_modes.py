"""Prefix augmentation vs all-position training, and long contexts on a generated dataset.

1. ml-100k, MambaRec, MAX_ITEM_LIST_LENGTH 200: seconds per epoch in both train modes (ratio
   prefix / all_positions) and validation NDCG@10 against wall time, each mode run to early
   stopping or to its time budget; prints where each stood at equal wall time.
2. Generated 1,000 users x 5,000 interactions (Zipf items), all_positions, batch 8, BCE with one
   negative per position: seconds per epoch and peak RSS for each of ``--models`` (default
   MambaRec and SASRec; ``Model:key=value,...`` is a model with settings, e.g.
   ``MambaRec:d_conv=64``) at each of ``--lengths`` (default 1000, 2000, 5000), and each model's
   time as a ratio of the first model's at the same length. Each run is a fresh process under a
   memory cap; a run that exceeds it is reported as out of memory. Runs longer than
   --max-batches batches report seconds per epoch extrapolated from the batches they ran (said
   in the output).

``python benchmarks/bench_train_modes.py [--prefix-budget 600] [--all-budget 300]
[--skip-ml100k] [--lengths 200 2000] [--models MambaRec MambaRec:d_conv=64 SASRec]``
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


class BudgetExceeded(Exception):
    pass


def _hwm():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def curve_child(mode, budget):
    """ml-100k MambaRec at L=200 in ``mode``: (seconds, valid ndcg@10) after each epoch."""
    from recbole_mamba.allocator import keep_large_allocations
    from recbole_mamba.quick_start import run

    keep_large_allocations()
    points, start = [], time.perf_counter()

    def record(epoch, score, result):
        points.append((time.perf_counter() - start, result["ndcg@10"]))
        if points[-1][0] > budget:
            raise BudgetExceeded

    try:
        run("MambaRec", "ml-100k", saved=False, epoch_callback=record, config_dict={
            "MAX_ITEM_LIST_LENGTH": 200, "train_mode": mode, "epochs": 200, "stopping_step": 5,
            "show_progress": False, "train_batch_size": 256 if mode == "prefix" else 64})
        stopped = "early stopping"
    except BudgetExceeded:
        stopped = "time budget"
    print(json.dumps({"points": points, "stopped": stopped}))


def generate(folder, users=1000, per_user=5000, items=20000, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    name = os.path.basename(folder)
    with open(os.path.join(folder, f"{name}.inter"), "w") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for u in range(users):
            item = np.minimum(rng.zipf(1.3, per_user), items)
            t = np.arange(per_user)
            f.write("".join(f"{u}\t{i}\t{s}\n" for i, s in zip(item.tolist(), t.tolist())))
    with open(os.path.join(folder, f"{name}.yaml"), "w") as f:
        f.write("load_col:\n  inter: [user_id, item_id, timestamp]\n")


def model_and_settings(variant):
    """'Model:key=value,...' -> ('Model', {key: value parsed as YAML}); the pairs read as the
    command line's ``--key=value`` (malformed or contradictory ones are a ConfigError)."""
    import yaml

    from recbole_mamba.config import parse_cmd_args

    model, _, settings = variant.partition(":")
    pairs = parse_cmd_args([f"--{pair}" for pair in settings.split(",") if pair])
    return model, {key: yaml.safe_load(value) for key, value in pairs.items()}


def long_child(variant, length, data_path, max_batches):
    """One all_positions epoch (or ``max_batches`` of it) of ``variant`` at ``length``."""
    import torch
    from recbole.data import data_preparation

    from recbole_mamba.allocator import keep_large_allocations
    from recbole_mamba.config import RecboleMambaConfig
    from recbole_mamba.data import create_dataset
    from recbole_mamba.registry import get_model
    from recbole_mamba.trainer.all_positions import all_positions_loss, build_model

    keep_large_allocations()
    model, settings = model_and_settings(variant)
    config = RecboleMambaConfig(model, "long", config_dict={
        "data_path": data_path, "MAX_ITEM_LIST_LENGTH": length, "train_mode": "all_positions",
        "train_batch_size": 8, "loss_type": "BCE", "show_progress": False, **settings})
    start = time.perf_counter()
    train, _, _ = data_preparation(config, create_dataset(config))
    load = time.perf_counter() - start
    recommender = build_model(get_model(model), config, train._dataset)  # every model takes BCE there
    optimizer = torch.optim.Adam(recommender.parameters(), lr=1e-3)
    start, done = time.perf_counter(), 0
    for batch in train:
        loss = all_positions_loss(recommender, batch, config["loss_type"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        done += 1
        if done >= max_batches:
            break
    seconds = time.perf_counter() - start
    print(json.dumps({"load": load, "seconds": seconds, "batches": done, "total": len(train),
                      "peak_rss": _hwm()}))


def child_run(args, mem_gb=None):
    def cap():
        if mem_gb:
            limit = int(mem_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, preexec_fn=cap)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["exit %d" % proc.returncode]
        return {"error": tail[0]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def part_one(prefix_budget, all_budget):
    curves = {mode: child_run(["--curve", mode, str(budget)])
              for mode, budget in (("prefix", prefix_budget), ("all_positions", all_budget))}
    for mode, r in curves.items():
        if "error" in r:
            print(f"ml-100k {mode}: failed: {r['error']}")
            return
    p, a = curves["prefix"]["points"], curves["all_positions"]["points"]
    epoch_p = p[0][0]
    epoch_a = a[-1][0] / len(a)
    print(f"ml-100k MambaRec L=200: seconds per epoch prefix {epoch_p:.1f} (first epoch), "
          f"all_positions {epoch_a:.1f} (mean of {len(a)}); ratio {epoch_p / epoch_a:.1f}x (target >= 10)")
    best_p = max(v for _, v in p)
    print(f"  prefix: {len(p)} epochs in {p[-1][0]:.0f}s ({curves['prefix']['stopped']}), best valid NDCG@10 {best_p:.4f}")
    best_a = max(v for _, v in a)
    print(f"  all_positions: {len(a)} epochs in {a[-1][0]:.0f}s ({curves['all_positions']['stopped']}), "
          f"best valid NDCG@10 {best_a:.4f}")
    reached = next((t for t, v in a if v >= best_p), None)
    at_equal = max((v for t, v in a if t <= p[-1][0]), default=float("nan"))
    print(f"  all_positions reached prefix's best ({best_p:.4f}) after "
          + (f"{reached:.0f}s" if reached is not None else "never (within its budget)")
          + f"; at prefix's wall time ({p[-1][0]:.0f}s) all_positions stood at {at_equal:.4f}")


def part_two(models, lengths, max_batches, mem_gb):
    with tempfile.TemporaryDirectory() as tmp:
        generate(os.path.join(tmp, "long"))
        for length in lengths:
            first = None  # the first model's seconds per epoch at this length
            for model in models:
                r = child_run(["--long", model, str(length), tmp, str(max_batches)], mem_gb)
                if "error" in r:
                    print(f"generated 1000x5000, L={length}, {model}: did not run: {r['error']} "
                          f"(memory cap {mem_gb} GB)")
                    continue
                per_epoch = r["seconds"] / r["batches"] * r["total"]
                first = per_epoch if model == models[0] else first
                how = "" if r["batches"] == r["total"] else f", extrapolated from {r['batches']}/{r['total']} batches"
                ratio = f", {per_epoch / first:.2f}x {models[0]}" if first and model != models[0] else ""
                print(f"generated 1000x5000, L={length}, {model}: {per_epoch:,.0f} s/epoch{how}{ratio}, "
                      f"peak RSS {r['peak_rss'] / 2**30:.2f} GiB, dataset load {r['load']:.0f}s", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prefix-budget", type=float, default=600)
    parser.add_argument("--all-budget", type=float, default=300)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1000, 2000, 5000])
    parser.add_argument("--models", nargs="+", default=["MambaRec", "SASRec"])
    parser.add_argument("--max-batches", type=int, default=40)
    parser.add_argument("--mem-gb", type=float, default=16)
    parser.add_argument("--skip-ml100k", action="store_true")
    parser.add_argument("--curve", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--long", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.curve:
        return curve_child(args.curve[0], float(args.curve[1]))
    if args.long:
        return long_child(args.long[0], int(args.long[1]), args.long[2], int(args.long[3]))
    if not args.skip_ml100k:
        part_one(args.prefix_budget, args.all_budget)
    part_two(args.models, args.lengths, args.max_batches, args.mem_gb)


if __name__ == "__main__":
    main()
