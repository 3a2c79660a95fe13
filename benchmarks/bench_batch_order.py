"""Seconds per training epoch with length-ordered batches against random ones, side by side.

    python benchmarks/bench_batch_order.py [--models=MambaRec,SASRec,...] [--dataset=ml-100k]
        [--epochs=2] [--key=value ...]

For each model, with the shipped settings for the dataset (the tuned file included) and
``train_mode: all_positions``: the same model, data and seed trained ``--epochs`` epochs with
``train_batch_order: random`` (RecBole's loader, rows padded to ``MAX_ITEM_LIST_LENGTH``) and
``length`` (:mod:`recbole_mamba.data.length_batches`). Prints batches per epoch, padded positions
and items per epoch, the mean seconds of the epochs after the first, and the ratio random /
length. Only time is measured here; what the order does to accuracy is bench_accuracy's.
"""

import argparse
import statistics
import sys

import torch

from recbole_mamba.config import RecboleMambaConfig
from recbole_mamba.quick_start import _build
from recbole_mamba.trainer import SafeCheckpointTrainer

MODELS = ("MambaRec", "SASRec", "GRU4Rec", "RecMamba", "MoEMaTrRec")
ORDERS = ("random", "length")


def epoch_costs(model, dataset, order, epochs, overrides):
    """(batches, padded positions, items, mean seconds of epochs 2..) of one epoch in ``order``."""
    config = RecboleMambaConfig(model, dataset, cmd_args=overrides, config_dict={
        "train_mode": "all_positions", "train_batch_order": order, "state": "WARNING", "show_progress": False})
    _, (train_data, _, _), recommender, _ = _build(config)
    batches, padded, items = 0, 0, 0
    for batch in train_data:
        lengths = batch[config["ITEM_LIST_LENGTH_FIELD"]]
        batches, items = batches + 1, items + int(lengths.sum())
        padded += batch[config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]].numel()
    trainer = SafeCheckpointTrainer(config, recommender)
    trainer.train_seconds = []  # as fit starts it; each training epoch appends its seconds
    for epoch in range(epochs):
        trainer._train_epoch(train_data, epoch, show_progress=False)
    return batches, padded, items, statistics.mean(trainer.train_seconds[1:] or trainer.train_seconds)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--epochs", type=int, default=2)
    args, overrides = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    timed = f"epochs 2 to {args.epochs}" if args.epochs > 1 else "the one epoch"
    print(f"{args.dataset}, all_positions, torch threads {torch.get_num_threads()}; seconds per epoch: mean of {timed}")
    for model in args.models.split(","):
        costs = {order: epoch_costs(model, args.dataset, order, args.epochs, overrides) for order in ORDERS}
        parts = [f"{order}: {b} batches, {p:,} padded positions, {i:,} items, {s:.1f} s"
                 for order, (b, p, i, s) in costs.items()]
        ratio = costs["random"][3] / costs["length"][3]
        print(f"{model}: {'; '.join(parts)}; random / length {ratio:.2f}x")


if __name__ == "__main__":
    main()
