"""All-position training read from the interaction store (:mod:`recbole_mamba.atomics.store`):
the dataset RecBole's loading of the atomic files gives, without loading them.

:class:`StoreWindowDataset` is a :class:`~recbole_mamba.data.WindowDataset` whose interactions
are the store's memory-mapped arrays: its rows (training windows, valid and test) are made from
the per-user offsets, their histories gathered from the int32 items when a batch is fetched, and
the tokens of its ids read from the store's token tables. Nothing of size interactions is built in
the process (4 bytes an interaction are read, through the page cache, that every process on the
machine shares). RecBole's split, samplers, dataloaders, metrics and trainer run on its rows as on
a :class:`WindowDataset`'s; tests check the rows, the splits and the metrics equal.

:func:`interaction_store` decides whether a run reads a store (``interaction_store``: ``auto``
uses one where there is one, and writes one on loading an atomic file of at least
:data:`AUTO_BUILD_BYTES`; ``on`` always uses one, writing it where it is missing; ``rebuild``
writes it again; ``off`` reads the atomic files): only all-position training on interactions alone
(no user or item features, aliases or benchmark files) reads one, and a store that no longer
matches its atomic file or the run's loading settings is refused in one line.
"""

import os
import types
from collections.abc import Mapping
from logging import getLogger

import numpy as np
import torch
from recbole.data.interaction import Interaction
from recbole.utils import FeatureSource, FeatureType, set_color

from recbole_mamba.atomics.inter_store import NotStreamable, loaded_columns, stream_inter_store
from recbole_mamba.atomics.store import loading_settings, open_store, write_store
from recbole_mamba.data.atomic_loading import admits_every_count
from recbole_mamba.data.window_dataset import WINDOW_START, WindowDataset
from recbole_mamba.errors import ConfigError

_WARNS = types.SimpleNamespace(logger=getLogger())  # what RecBole's interval parser needs of a dataset
AUTO_BUILD_BYTES = 64 << 20  # auto: an atomic file this large (about 3 M interactions) gets a store


class LazyTokenIndex(Mapping):
    """RecBole's ``field2token_id[field]`` ({token: id}) for a store's token table, built on first
    use: nothing on the training path reads it."""

    def __init__(self, table):
        self._table, self._index = table, None

    def _built(self):
        if self._index is None:
            self._index = self._table.index()
        return self._index

    def __getitem__(self, token):
        return self._built()[token]

    def __iter__(self):
        return iter(self._built())

    def __len__(self):
        return len(self._table)


class StoreWindowDataset(WindowDataset):
    """A :class:`WindowDataset` whose interactions are ``store``'s (see the module docstring)."""

    def __init__(self, config, store):
        self.store = store
        super().__init__(config)

    def _from_scratch(self):
        self.logger.debug(set_color(f"Reading {self.store.folder}", "green"))
        self._get_preset()
        self._get_field_from_config()
        for field, ftype in ((self.uid_field, FeatureType.TOKEN), (self.iid_field, FeatureType.TOKEN),
                             (self.time_field, FeatureType.FLOAT)):
            self.set_field_property(field, ftype, FeatureSource.INTERACTION, 1)
        tables = {self.uid_field: self.store.user_tokens, self.iid_field: self.store.item_tokens}
        self.field2id_token = dict(tables)
        self.field2token_id = {field: LazyTokenIndex(table) for field, table in tables.items()}
        self.inter_feat = self.user_feat = self.item_feat = None
        self.feat_name_list = []  # nothing for RecBole to turn into Interactions

    @property
    def inter_num(self):
        return self.store.interactions if self.inter_feat is None else super().inter_num

    @property
    def avg_actions_of_users(self):
        if self.inter_feat is not None:
            return super().avg_actions_of_users
        lengths = self.store.lengths()
        return float(lengths.sum() / max(1, np.count_nonzero(lengths)))

    @property
    def avg_actions_of_items(self):
        if self.inter_feat is not None:
            return super().avg_actions_of_items
        return self.store.interactions / max(1, self.store.meta["items_seen"])

    def data_augmentation(self):
        list_field = self.iid_field + self.config["LIST_SUFFIX"]
        setattr(self, f"{self.iid_field}_list_field", list_field)
        self.set_field_property(list_field, FeatureType.TOKEN_SEQ, FeatureSource.INTERACTION, self.max_item_list_len)
        self.set_field_property(self.item_list_length_field, FeatureType.TOKEN, FeatureSource.INTERACTION, 1)
        max_len = self.config["MAX_ITEM_LIST_LENGTH"]
        offsets = np.asarray(self.store.offsets)
        starts, ends = offsets[:-1], offsets[1:]
        target = self._targets(starts, ends, max_len, self.config["train_windows"] or "all")
        user_of_row = np.searchsorted(starts, target, side="right") - 1  # the last user starting at or before: not empty
        first = np.maximum(starts[user_of_row], target - max_len)  # history [first, target)
        self.history_sources = {list_field: torch.from_numpy(self.store.items)}  # int32, memory-mapped
        self.inter_feat = Interaction({
            self.uid_field: torch.from_numpy(user_of_row.astype(np.int64)),
            self.iid_field: torch.from_numpy(self.store.items[target].astype(np.int64)),
            self.time_field: torch.from_numpy(self.store.times_at(target).astype(np.float32)),  # RecBole's FloatTensor
            self.item_list_length_field: torch.from_numpy((target - first).astype(np.int64)),
            WINDOW_START: torch.from_numpy(first.astype(np.int64)),
        })


def store_unsupported(config):
    """Why the run cannot read its interactions from a store, or None."""
    if config["train_mode"] != "all_positions":
        return f"train_mode {config['train_mode']} (prefix rows are RecBole's own dataset)"
    load_col = config["load_col"]
    if load_col is not None and set(load_col) != {"inter"}:
        return f"load_col loads {', '.join(sorted(set(load_col) - {'inter'}))} features"
    if load_col is None:
        for suffix in ("user", "item"):
            path = os.path.join(config["data_path"], f"{config['dataset']}.{suffix}")
            if os.path.isfile(path):
                return f"load_col: ~ loads the features of {path}"
    fields = (config["USER_ID_FIELD"], config["ITEM_ID_FIELD"], config["TIME_FIELD"])
    if None in fields or (load_col is not None and not set(fields) <= set(load_col["inter"])):
        return "it needs the user, item and time fields of the .inter file"
    for key in ("benchmark_filename", "alias_of_user_id", "alias_of_item_id", "dataset_save_path", "save_dataset",
                "unused_col", "preload_weight"):
        if config[key]:
            return f"{key} is set"
    return None


def run_loading(config):
    """:func:`~recbole_mamba.atomics.store.loading_settings` of the run: its fields, separator
    and the RecBole filters that drop interactions."""
    filters = {key: config[key] for key in ("rm_dup_inter", "val_interval", "threshold") if config[key]}
    for key in ("user_inter_num_interval", "item_inter_num_interval"):
        parsed = WindowDataset._parse_intervals_str(_WARNS, config[key]) if config[key] else None
        if not admits_every_count(parsed):
            filters[key] = config[key]
    return loading_settings(config["USER_ID_FIELD"], config["ITEM_ID_FIELD"], config["TIME_FIELD"],
                            config["field_separator"], filters)


def not_streamed(config, source, loading):
    """Why the store cannot be written from the atomic file a chunk at a time as RecBole would load
    it (:mod:`recbole_mamba.atomics.inter_store`), or None."""
    if loading["filters"]:
        return f"RecBole's filters drop interactions ({', '.join(loading['filters'])})"
    time_field = config["TIME_FIELD"]
    if config["normalize_all"] or time_field in (config["normalize_field"] or ()):
        return f"RecBole normalises {time_field} (normalize_all / normalize_field)"
    if time_field in (config["discretization"] or {}):
        return f"RecBole discretises {time_field}"
    if config["unload_col"]:
        return "unload_col is set"
    return None


def build_store(config, source, loading):
    """Write the store of the run's dataset: from the atomic file a chunk at a time where RecBole's
    loading would only parse and number it (:func:`not_streamed`), else from RecBole's loading of
    its atomic files (filters, remapping: :class:`WindowDataset`'s, tested equal to RecBole's),
    said in one line."""
    why_not = not_streamed(config, source, loading)
    if why_not is None:
        separator, encoding = config["field_separator"], config["encoding"] or "utf-8"
        fields = (config["USER_ID_FIELD"], config["ITEM_ID_FIELD"], config["TIME_FIELD"])
        try:
            loaded = loaded_columns(source, separator, encoding, config["load_col"])
            return stream_inter_store(config["data_path"], config["dataset"], source, loaded, fields, separator,
                                      encoding, loading)
        except NotStreamable as error:
            why_not = str(error)
    getLogger().info(set_color("interactions", "blue") + f": the store is written from RecBole's loading of "
                     f"{source} (about 150 bytes an interaction), not streamed: {why_not}")
    dataset = WindowDataset(config)
    frame = dataset.inter_feat
    user, item, time = (frame[field].to_numpy() for field in (dataset.uid_field, dataset.iid_field, dataset.time_field))
    order = np.lexsort((time.astype(np.float32), user))  # as RecBole sorts: by user, then float32 time, stable
    return write_store(config["data_path"], config["dataset"], user[order], item[order], time[order],
                       dataset.field2id_token[dataset.uid_field], dataset.field2id_token[dataset.iid_field],
                       source, loading)


def interaction_store(config):
    """The opened store the run reads its interactions from, or None (see the module docstring)."""
    mode = config["interaction_store"] or "auto"
    if mode == "off":
        return None
    why_not = store_unsupported(config)
    if why_not is not None:
        if mode != "auto":
            raise ConfigError(f"interaction_store {mode}: the run cannot read a store: {why_not}")
        return None
    folder, name = config["data_path"], config["dataset"]
    source = os.path.join(folder, f"{name}.inter")
    if not os.path.isfile(source):
        return None  # RecBole's loading says what is missing
    loading = run_loading(config)
    logger = getLogger()
    if mode != "rebuild":
        store = open_store(folder, name, source, loading)
        if store is not None:
            logger.info(set_color("interactions", "blue") + f": {store.folder} ({store.interactions:,}, memory-mapped)")
            return store
        if mode == "auto" and os.path.getsize(source) < AUTO_BUILD_BYTES:
            return None
    written = build_store(config, source, loading)
    logger.info(set_color("interactions", "blue") + f": wrote {written} from {source}")
    return open_store(folder, name, source, loading)
