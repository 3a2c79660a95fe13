"""Data: RecBole dataset extensions (all-position training rows, faster loading of atomic files)."""

import importlib

from recbole.data import create_dataset as recbole_create_dataset
from recbole.data.dataset import SequentialDataset
from recbole.utils import ModelType

from recbole_mamba.train_modes import ALL_POSITIONS
from recbole_mamba.data.atomic_loading import AtomicFileLoading
from recbole_mamba.data.pandas3 import Pandas3Dataset
from recbole_mamba.data.store_dataset import StoreWindowDataset, interaction_store
from recbole_mamba.data.window_dataset import WindowDataset


class PrefixDataset(AtomicFileLoading, Pandas3Dataset, SequentialDataset):
    """RecBole's ``SequentialDataset`` (prefix rows), its atomic files loaded by
    :class:`~recbole_mamba.data.atomic_loading.AtomicFileLoading`, its steps meaning on pandas 3
    what they mean on pandas 2 (:class:`~recbole_mamba.data.pandas3.Pandas3Dataset`)."""


def create_dataset(config):
    """A :class:`WindowDataset` when ``train_mode`` is ``all_positions`` (a
    :class:`StoreWindowDataset` where the run reads the interaction store: see
    :func:`~recbole_mamba.data.store_dataset.interaction_store`); a :class:`PrefixDataset` where
    RecBole would make a plain ``SequentialDataset`` (a sequential model without a dataset class of
    its own, no saved dataset asked for); else RecBole's dataset."""
    store = interaction_store(config)  # None where the run reads none; refuses "on" where it cannot
    if store is not None:
        return StoreWindowDataset(config, store)
    if config["train_mode"] == ALL_POSITIONS:
        return WindowDataset(config)
    own_class = hasattr(importlib.import_module("recbole.data.dataset"), config["model"] + "Dataset")
    if config["MODEL_TYPE"] == ModelType.SEQUENTIAL and not own_class and not (
            config["dataset_save_path"] or config["save_dataset"]):
        return PrefixDataset(config)
    return recbole_create_dataset(config)


__all__ = ["PrefixDataset", "StoreWindowDataset", "WindowDataset", "create_dataset"]
