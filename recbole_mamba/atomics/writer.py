"""Writes a converted dataset: atomic files, the dataset yaml and stats. Every file is first
written in full to a temporary file in the target folder, and only then are all renamed into
place, so a failure never leaves a half-written dataset."""

import json
import os
from contextlib import ExitStack

import numpy as np

from recbole_mamba.files import atomic_open

WRITE_ROWS = 1_000_000


def _write_table(f, header, columns):
    """Tab-separated rows of ``columns`` (list of arrays) under ``header`` (list of str).
    pyarrow's CSV writer: about 10x pandas' to_csv here; floats in their shortest exact form."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    f.write("\t".join(header) + "\n")
    f.flush()
    n = len(columns[0]) if columns else 0
    options = pa_csv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
    for start in range(0, n, WRITE_ROWS):
        table = pa.table({str(i): c[start:start + WRITE_ROWS] for i, c in enumerate(columns)})
        pa_csv.write_csv(table, f.buffer, write_options=options)
        f.buffer.flush()


def sequence_stats(user):
    """Table-1 statistics of user ids: users, interactions, avg/median/max length."""
    return length_stats(np.unique(user, return_counts=True)[1])


def length_stats(lengths):
    """Table-1 statistics of the users' numbers of interactions ``lengths`` (each >= 1)."""
    return {
        "users": int(len(lengths)),
        "interactions": int(lengths.sum()),
        "avg_seq_len": round(float(lengths.mean()), 2) if len(lengths) else 0.0,
        "median_seq_len": float(np.median(lengths)) if len(lengths) else 0.0,
        "max_seq_len": int(lengths.max()) if len(lengths) else 0,
    }


def format_table(name, stats):
    """The reference study's Table-1 row for ``stats``."""
    head = f"{'dataset':<24}{'users':>10}{'items':>12}{'interactions':>15}{'avg len':>10}{'median':>9}{'max':>8}"
    row = (
        f"{name:<24}{stats['users']:>10,}{stats['items']:>12,}{stats['interactions']:>15,}"
        f"{stats['avg_seq_len']:>10.1f}{stats['median_seq_len']:>9.1f}{stats['max_seq_len']:>8,}"
    )
    return head + "\n" + row


HELD_OUT = 3  # a user's interactions no training history holds: the valid and test targets, and the
# training target that follows the longest training history (leave-one-out)


def dataset_yaml(name, inter_fields, user_fields=None, item_fields=None, max_len=None):
    """The dataset config merged by the plugin when ``--dataset=<name>`` is used; a dataset cut at
    ``max_len`` interactions a user gets ``MAX_ITEM_LIST_LENGTH`` max_len - 3, the longest training
    history, so that no valid or test row reads a position training never saw."""
    load_col = {"inter": inter_fields}
    if user_fields:
        load_col["user"] = user_fields
    if item_fields:
        load_col["item"] = item_fields
    lines = [
        f"# {name}: written by python -m recbole_mamba.atomics; see stats.json for the cut.",
        'field_separator: "\\t"',
        "USER_ID_FIELD: user_id",
        "ITEM_ID_FIELD: item_id",
        "TIME_FIELD: timestamp",
        "load_col:",
        *(f"  {suffix}: [{', '.join(fields)}]" for suffix, fields in load_col.items()),
        "# the converter made the cut: no further filtering",
        "rm_dup_inter: ~",
        "val_interval: ~",
        "filter_inter_by_user_or_item: False",
        'user_inter_num_interval: "[0,inf)"',
        'item_inter_num_interval: "[0,inf)"',
    ]
    if max_len and max_len > HELD_OUT:
        lines += [f"# cut at --max-len {max_len}: the longest training history is {max_len - HELD_OUT} items",
                  f"MAX_ITEM_LIST_LENGTH: {max_len - HELD_OUT}"]
    return "\n".join(lines) + "\n"


def write_dataset(output_dir, name, inter, stats, user_table=None, item_table=None):
    """Write ``output_dir/name/``: ``name.inter`` (``inter``: list of (header, array)),
    ``name.user`` / ``name.item`` (``user_table`` / ``item_table``: (header list, list of arrays))
    if given, ``name.yaml`` and ``stats.json``. Returns the folder."""
    folder = os.path.join(output_dir, name)
    created = not os.path.isdir(folder)
    os.makedirs(folder, exist_ok=True)
    inter_fields = [h.split(":")[0] for h, _ in inter]
    user_fields = [h.split(":")[0] for h in user_table[0]] if user_table is not None else None
    item_fields = [h.split(":")[0] for h in item_table[0]] if item_table is not None else None
    files = [
        (f"{name}.inter",
         lambda f: _write_table(f, [h for h, _ in inter], [c for _, c in inter])),
        (f"{name}.yaml", lambda f: f.write(dataset_yaml(name, inter_fields, user_fields, item_fields,
                                                        (stats.get("options") or {}).get("max_len")))),
        ("stats.json", lambda f: f.write(json.dumps(stats, indent=2, sort_keys=True) + "\n")),
    ]
    if user_table is not None:
        files.append((f"{name}.user", lambda f: _write_table(f, *user_table)))
    if item_table is not None:
        files.append((f"{name}.item", lambda f: _write_table(f, *item_table)))
    try:
        # each file is renamed when its block exits: only after every file has been written in full
        with ExitStack() as stack:
            for filename, write in files:
                path = os.path.join(folder, filename)
                write(stack.enter_context(atomic_open(path, "w", encoding="utf-8", newline="\n")))
    except BaseException:
        if created and not os.listdir(folder):
            os.rmdir(folder)
        raise
    return folder
