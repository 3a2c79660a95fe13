"""``python -m recbole_mamba.atomics check DIR/NAME``: an atomic dataset checked without training.

Its files as a run would read them (every line of the loaded columns,
:mod:`recbole_mamba.atomics.check`), then the dataset as RecBole loads it: the reference study's
Table-1 row and how many users each protocol keeps.
"""

import os

import numpy as np

from recbole_mamba.atomics.check import check_file, id_fields, load_columns
from recbole_mamba.atomics.writer import format_table, sequence_stats
from recbole_mamba.errors import ConfigError

EVAL_ROWS = 2  # leave-one-out: the valid and the test target
SAMPLED = (100, 1000)  # uniN / popN protocols reported


def check_dataset(folder, model="MambaRec", overrides=None):
    """Lines to print about the dataset in ``folder`` (``DIR/NAME``) and whether a run on it would
    train (every split has rows). Problems with its files raise an
    :class:`~recbole_mamba.errors.InputError` naming file, lines, fields and values."""
    from recbole.data import data_preparation

    from recbole_mamba.config import RecboleMambaConfig
    from recbole_mamba.data import create_dataset

    folder = os.path.abspath(folder.rstrip("/"))
    data_path, name = os.path.dirname(folder), os.path.basename(folder)
    if not os.path.isfile(os.path.join(folder, f"{name}.inter")):
        raise ConfigError(f"no {name}.inter in {folder}: give the dataset's folder, DIR/NAME")
    config = RecboleMambaConfig(model, name, config_dict={"data_path": data_path, "state": "ERROR",
                                                          **(overrides or {})})
    separator, seq_separator = config["field_separator"], config["seq_separator"] or " "
    for suffix in ("inter", "user", "item"):
        path = os.path.join(folder, f"{name}.{suffix}")
        loaded = load_columns(config, suffix)
        if os.path.isfile(path) and loaded != []:
            required = id_fields(suffix, config["USER_ID_FIELD"], config["ITEM_ID_FIELD"], config["TIME_FIELD"])
            check_file(path, separator, loaded, required, seq_separator).raise_any()
    dataset = create_dataset(config)
    user = np.asarray(dataset.inter_feat[dataset.uid_field])
    stats = {**sequence_stats(np.sort(user)), "items": int(len(np.unique(dataset.inter_feat[dataset.iid_field])))}
    _, lengths = np.unique(user, return_counts=True)
    every = int((lengths >= EVAL_ROWS + 2).sum())
    splits = [len(loader._dataset) for loader in data_preparation(config, dataset)]
    lines = [format_table(name, stats),
             f"leave-one-out by time: {splits[0]:,} training, {splits[1]:,} valid and {splits[2]:,} test rows; "
             f"{every:,} of {stats['users']:,} users have the 4 interactions or more that give a row in each"]
    items = dataset.item_num - 1
    lines.append("sampled protocols: " + ", ".join(
        f"uni{n} / pop{n} {'fit' if n <= items - 1 else 'do not fit'} (they draw {n} of the {items:,} items)"
        for n in SAMPLED))
    lines.append(f"MAX_ITEM_LIST_LENGTH {config['MAX_ITEM_LIST_LENGTH']} ({config.source_of('MAX_ITEM_LIST_LENGTH')})")
    trains = all(splits)
    lines.append("it trains" if trains else "it would not train: every split needs rows, and only a user with 4 "
                                            "interactions or more gives one to each")
    return lines, trains
