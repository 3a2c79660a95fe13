"""Data: RecBole dataset extensions (all-position training rows)."""

from recbole.data import create_dataset as recbole_create_dataset

from recbole_mamba.config import ALL_POSITIONS
from recbole_mamba.data.window_dataset import WindowDataset


def create_dataset(config):
    """RecBole's dataset, or a :class:`WindowDataset` when ``train_mode`` is ``all_positions``."""
    if config["train_mode"] == ALL_POSITIONS:
        return WindowDataset(config)
    return recbole_create_dataset(config)


__all__ = ["WindowDataset", "create_dataset"]
