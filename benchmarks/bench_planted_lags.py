"""Which models learn a planted next-item rule at lags from 4 to 64, and how fast.

    python benchmarks/bench_planted_lags.py [--models=SASRec,MambaRec,...] [--lags=4,8,16,32,64]
        [--window=80] [--users=400] [--items=40] [--epochs=100] [--jobs=2]
        [--out=saved/bench_planted_lags.jsonl] [--key=value ...]

For each lag k, generated data (:mod:`recbole_mamba.atomics.synthetic`, noise 0, one lag for
every user): each user's next item is a fixed permutation of the item k steps back; ``--users``
users of ``--window`` + 3 items each (two held out, so the longest training history is as long
as the valid and test ones), ``--items`` items (chance HR@10 is 10 / items). Every lag has the
same data size, window and budget: only the lag changes. Each (model, lag) trains through the
pipeline a user runs (``recbole_mamba.quick_start.run``: the model's shipped defaults, early
stopping on validation NDCG@10) with ``train_mode: all_positions``, batches of 8 windows and at
most ``--epochs`` epochs, ``--jobs`` runs at a time on one torch thread each.

Then the trained model's lag profile: over 256 new sequences with the same rule, the relative
change of the last position's output when the item d steps back is replaced by a random one,
for d = 0 .. window - 1. The prediction at the last position needs the item k - 1 steps back (or
2k - 1, ..., through the permutation twice or more): a model that reads it exactly changes much
there and little at k - 2 and k; one that blurs the distances changes about as much at all three.

Results are appended to ``--out`` (one JSON line per run); a run already there with the same
model, lag and settings is not repeated. Prints the table: test HR@10 of each model at each lag,
the first epoch at which validation HR@10 reached 0.75, and the epochs run.
"""

import argparse
import hashlib
import json
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

MODELS = ("SASRec", "MoEMaTrRec", "MambaRec", "RecMamba", "GRU4Rec")
LEARNED = 0.75  # validation HR@10 that counts as learned (chance 0.25 with 40 items)
PROBE_SEQUENCES = 256


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--lags", default="4,8,16,32,64")
    parser.add_argument("--window", type=int, default=80)
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default=os.path.join("saved", "bench_planted_lags.jsonl"))
    args, overrides = parser.parse_known_args(argv)
    bad = [o for o in overrides if not (o.startswith("--") and "=" in o)]
    if bad:
        raise SystemExit(f"overrides must be --key=value, got {' '.join(bad)}")
    lags = [int(k) for k in args.lags.split(",") if k]
    if max(lags) >= args.window:
        raise SystemExit(f"--window ({args.window}) must exceed the longest lag ({max(lags)})")
    return args, lags, overrides


def dataset_name(lag, args):
    return f"planted-lag{lag}-w{args.window}-u{args.users}-i{args.items}"


def run_key(model, lag, args, overrides):
    """A run's identity in the results file: model, lag, data and every setting given here."""
    given = [model, lag, args.window, args.users, args.items, args.epochs, sorted(overrides)]
    return hashlib.sha256(json.dumps(given).encode()).hexdigest()[:16]


def lag_profile(model, ids, lag, window):
    """(window,) list: mean relative change of ``model``'s last-position output (``forward(seq
    (B, window), lengths (B,))`` -> (B, H)) when the item d steps back is replaced by a uniform
    one, d = 0 .. window - 1, over new sequences with the rule; ``ids``: (items,) the model's id of
    generated item i at index i - 1."""
    import torch

    from recbole_mamba.atomics.synthetic import planted_sequences

    sequences, _ = planted_sequences(PROBE_SEQUENCES, window, len(ids), (lag,), 0.0, seed=12345)
    seq = ids[torch.from_numpy(sequences) - 1]
    lengths = torch.full((len(seq),), window)
    generator = torch.Generator().manual_seed(0)
    profile = []
    with torch.no_grad():
        base = model.forward(seq, lengths)
        for d in range(window):
            changed = seq.clone()
            changed[:, window - 1 - d] = ids[torch.randint(0, len(ids), (len(seq),), generator=generator)]
            shift = (model.forward(changed, lengths) - base).norm(dim=1) / base.norm(dim=1)
            profile.append(round(float(shift.mean()), 4))
    return profile


def train_and_probe(model, lag, data_path, args, overrides):
    """One run: the row of the results file (without its key)."""
    import torch

    from recbole_mamba.quick_start import run
    from recbole_mamba.serve import load

    torch.set_num_threads(1)
    curve = []
    # a directory of its own: RecBole names a checkpoint by model and second, and runs go in parallel
    with tempfile.TemporaryDirectory(dir=data_path, prefix="checkpoints-") as checkpoint_dir:
        start = time.perf_counter()
        result = run(model, dataset_name(lag, args), config_dict={
            "data_path": data_path, "MAX_ITEM_LIST_LENGTH": args.window, "train_mode": "all_positions",
            "train_batch_tokens": 8 * args.window, "epochs": args.epochs, "show_progress": False, "state": "WARNING",
            "checkpoint_dir": checkpoint_dir,
        }, cmd_args=overrides, saved=True, epoch_callback=lambda epoch, score, valid: curve.append(float(valid["hit@10"])))
        wall = time.perf_counter() - start
        trained = load(result["checkpoint"])  # the model and its item tokens, from the checkpoint alone
    learned = next((epoch + 1 for epoch, hit in enumerate(curve) if hit >= LEARNED), None)
    return {
        "model": model, "lag": lag, "loss_type": result["config"]["loss_type"], "epochs": result["epochs_run"],
        "wall_s": round(wall, 1), "test_hit10": float(result["test_result"]["hit@10"]),
        "valid_hit10": float(result["best_valid_result"]["hit@10"]), "learned_epoch": learned,
        "valid_curve": [round(hit, 3) for hit in curve],
        "profile": lag_profile(trained.model, torch.tensor(trained.ids_of(range(1, args.items + 1))), lag,
                               args.window),
    }


def table(rows, models, lags, args, overrides=()):
    """Markdown table: a row per model, a column per lag; each cell test HR@10, then (the first
    epoch with validation HR@10 >= 0.75 or '-', and the epochs run); the caption names the
    ``--key=value`` overrides."""
    by_run = {(row["model"], row["lag"]): row for row in rows}
    lines = [
        f"planted rule, one lag per dataset: {args.users} users x {args.window + 3} items, {args.items} items "
        f"(chance HR@10 {min(10, args.items) / args.items:.2f}), window {args.window}, batches of 8 windows, "
        f"at most {args.epochs} epochs, shipped defaults and early stopping"
        + (f" but {' '.join(overrides)}" if overrides else "")
        + f"; test HR@10 (first epoch with valid HR@10 >= {LEARNED} / epochs run)",
        "",
        "| model | loss | " + " | ".join(f"lag {lag}" for lag in lags) + " |",
        "|---|---|" + "---|" * len(lags),
    ]
    for model in models:
        cells, loss = [], ""
        for lag in lags:
            row = by_run.get((model, lag))
            if row is None:
                cells.append("")
                continue
            loss = row["loss_type"]
            cells.append(f"{row['test_hit10']:.2f} ({row['learned_epoch'] or '-'} / {row['epochs']})")
        lines.append(f"| {model} | {loss} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def profile_lines(rows):
    """One line per run: its lag profile at d = k - 1 (the item the rule needs) and at the two
    distances beside it, and where it is largest over the other distances d >= 1 (d = 0 is the
    last item itself; d = 2k - 1, 3k - 1, ... also reveal the answer, through the permutation
    applied two or more times, so they are left out too)."""
    lines = []
    for row in rows:
        profile, lag = row["profile"], row["lag"]
        need = lag - 1
        beside = ", ".join(f"{profile[d]:.3f}" for d in (need - 1, need + 1) if 0 <= d < len(profile))
        elsewhere = [d for d in range(1, len(profile)) if (d + 1) % lag]
        peak = max(elsewhere, key=profile.__getitem__)
        lines.append(f"{row['model']} lag {lag}: change at d = {need}: {profile[need]:.3f} (beside it: {beside}); "
                     f"largest elsewhere at d = {peak}: {profile[peak]:.3f}")
    return lines


def main(argv=None):
    args, lags, overrides = _parse(sys.argv[1:] if argv is None else argv)
    from recbole_mamba.atomics.synthetic import write_synthetic

    models = [m for m in args.models.split(",") if m]
    data_path = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(args.out)), "planted_lags"))
    for lag in lags:
        if not os.path.isdir(os.path.join(data_path, dataset_name(lag, args))):
            write_synthetic(data_path, users=args.users, length=args.window + 3, items=args.items, lags=(lag,),
                            noise=0.0, name=dataset_name(lag, args))
    done = {}
    if os.path.isfile(args.out):
        with open(args.out, encoding="utf-8") as f:
            done = {row["key"]: row for row in map(json.loads, filter(str.strip, f))}
    wanted = [(model, lag, run_key(model, lag, args, overrides)) for lag in lags for model in models]
    todo = [(model, lag, key) for model, lag, key in wanted if key not in done]
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {key: pool.submit(train_and_probe, model, lag, data_path, args, overrides)
                   for model, lag, key in todo}
        for model, lag, key in todo:
            row = {"key": key, **futures[key].result()}
            with open(args.out, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            done[key] = row
            print(f"{model} lag {lag}: test HR@10 {row['test_hit10']:.2f} ({row['epochs']} epochs, "
                  f"{row['wall_s']:.0f} s)", flush=True)
    rows = [done[key] for _, _, key in wanted]
    print(table(rows, models, lags, args, overrides))
    print()
    print("\n".join(profile_lines(rows)))


if __name__ == "__main__":
    main()
