"""Accuracy of every model under one protocol, over several seeds: mean and standard deviation.

    python benchmarks/bench_accuracy.py [--models=MambaRec,SASRec,...] [--seeds=0,1,2]
        [--dataset=ml-100k] [--out=saved/bench_accuracy.jsonl] [--key=value ...]

Each (model, seed) trains through the same pipeline a user runs (``recbole_mamba.quick_start.run``
with the shipped defaults: the model's, then the dataset's, then the tuned per-model file for the
dataset, then the ``--key=value`` overrides given here), early-stops on validation NDCG@10 and is
tested once. The same best checkpoint is then evaluated again with ``exclude_history`` (each
user's earlier items masked; the model and its selection stay those of the unmasked protocol).
Results are appended to ``--out`` as they finish (one JSON line per run, with the settings it
trained with); a run already there with the same model, seed and settings is not repeated, so an
interrupted benchmark continues where it stopped, and a changed default (e.g. a new tuned file)
trains again. Prints both tables (model, loss, train mode, epochs, wall time, valid and test
NDCG@10 / HR@10 as mean ± std), each with its protocol as caption.
"""

import argparse
import hashlib
import json
import os
import statistics
import sys
import time

from recbole_mamba.config import RecboleMambaConfig
from recbole_mamba.quick_start import load_run, run

MODELS = ("MambaRec", "SASRec", "GRU4Rec", "RecMamba", "MoEMaTrRec")
METRICS = ("ndcg@10", "hit@10")


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--out", default=os.path.join("saved", "bench_accuracy.jsonl"))
    return parser.parse_known_args(argv)


def settings(model, dataset, overrides):
    """Every parameter a run of ``model`` trains with (yaml files, tuned file, overrides), the seed
    and logging aside."""
    config = RecboleMambaConfig(model, dataset, cmd_args=overrides)
    kept = {k: v for k, v in config.parameters_dict.items() if k not in ("seed", "state", "show_progress")}
    return {"dataset": config["dataset"], **kept}


def run_key(model, seed, trained_with):
    """A run's identity in the results file: model, seed and a digest of its settings."""
    digest = hashlib.sha256(json.dumps(trained_with, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return json.dumps([model, seed, digest])


def _done(path):
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return {row["key"]: row for row in rows}


def run_one(model, dataset, seed, overrides):
    """Train and test one model; returns the row of the table's raw data (without its settings)."""
    start = time.perf_counter()
    result = run(model, dataset, config_dict={"seed": seed, "show_progress": False, "state": "WARNING"},
                 cmd_args=overrides, saved=True)
    wall = time.perf_counter() - start
    masked = load_run(result["checkpoint"], config_dict={"exclude_history": True, "state": "WARNING"})
    config = result["config"]
    return {
        "model": model, "dataset": config["dataset"], "seed": seed, "overrides": overrides,
        "loss_type": config["loss_type"], "train_mode": config["train_mode"],
        "max_len": config["MAX_ITEM_LIST_LENGTH"], "protocol": result["protocol"],
        "epochs": result["epochs_run"], "wall_s": round(wall, 1),
        "valid": {k: float(result["best_valid_result"][k]) for k in METRICS},
        "test": {k: float(result["test_result"][k]) for k in METRICS},
        "masked": {
            "protocol": masked["protocol"],
            "valid": {k: float(masked["valid_result"][k]) for k in METRICS},
            "test": {k: float(masked["test_result"][k]) for k in METRICS},
        },
    }


def _mean_std(values):
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.4f} ± {std:.4f}"


def table(rows, masked=False):
    """Markdown table of ``rows`` grouped by model (in first-seen order), with the protocol; with
    ``masked``, of their evaluation with history items masked."""
    if masked:
        rows = [{**row, **row["masked"]} for row in rows]
    by_model = {}
    for row in rows:
        by_model.setdefault(row["model"], []).append(row)
    protocols = sorted({row["protocol"] for row in rows})
    lines = [
        f"{rows[0]['dataset']}; {'; '.join(protocols)}; mean ± std over seeds; "
        + ("the checkpoints selected on unmasked valid NDCG@10" if masked else "selected on valid NDCG@10"),
        "",
        "| model | loss | mode, L | seeds | epochs | wall | valid NDCG@10 | valid HR@10 | test NDCG@10 | test HR@10 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model, group in by_model.items():
        first = group[0]
        wall = statistics.fmean(r["wall_s"] for r in group)
        order = first.get("settings", {}).get("train_batch_order") if first["train_mode"] == "all_positions" else None
        mode = first["train_mode"] + (f" ({order} order)" if order else "")
        lines.append(
            f"| {model} | {first['loss_type']} | {mode}, {first['max_len']} | {len(group)} "
            f"| {statistics.fmean(r['epochs'] for r in group):.0f} | {wall // 60:.0f} min {wall % 60:02.0f} s "
            + " ".join(f"| {_mean_std([r[split][m] for r in group])}" for split in ("valid", "test") for m in METRICS)
            + " |"
        )
    return "\n".join(lines)


def main(argv=None):
    args, overrides = _parse(sys.argv[1:] if argv is None else argv)
    bad = [o for o in overrides if not (o.startswith("--") and "=" in o)]
    if bad:
        raise SystemExit(f"overrides must be --key=value, got {' '.join(bad)}")
    models = [m for m in args.models.split(",") if m]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    done = _done(args.out)
    rows = []
    for model in models:
        for seed in seeds:
            trained_with = settings(model, args.dataset, overrides)
            key = run_key(model, seed, trained_with)
            if key not in done:
                row = {"key": key, **run_one(model, args.dataset, seed, overrides), "settings": trained_with}
                with open(args.out, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
                done[key] = row
                print(f"{model} seed {seed}: test NDCG@10 {row['test']['ndcg@10']:.4f} "
                      f"({row['epochs']} epochs, {row['wall_s']:.0f} s)", flush=True)
            rows.append(done[key])
    print(table(rows))
    print()
    print(table(rows, masked=True))


if __name__ == "__main__":
    main()
