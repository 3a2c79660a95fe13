"""Raw LFM-1b and KuaiRand dumps -> per-user cut -> RecBole atomic files.

Order of operations (each optional): rows by signal/tab (KuaiRand) -> users by ``user_fraction``
-> drop consecutive duplicates -> each user's last ``max_len`` events by time (ties: file order)
-> ``users`` (K users of smallest hash) -> items with fewer than ``min_item_count`` events and
users with fewer than ``min_user_len`` events dropped, repeatedly, to a fixed point (k-core).
"""

import difflib
import os
import sys
import time

import numpy as np
import pandas as pd

from recbole_mamba.atomics.cut import (
    LastEventsPerUser,
    filter_counts,
    first_users_by_hash,
    narrowed,
    sampled_by_fraction,
)
from recbole_mamba.atomics.errors import OptionError, RawInputError
from recbole_mamba.atomics.options import ConvertOptions
from recbole_mamba.atomics.reader import BadLines, DelimitedReader, open_binary
from recbole_mamba.atomics.store import write_converted_store
from recbole_mamba.atomics.tokens import first_appearance
from recbole_mamba.atomics.writer import HELD_OUT, format_table, length_stats, write_dataset

LFM1B_COLUMNS = ("user_id", "artist_id", "album_id", "track_id", "timestamp")
LFM1B_EVENTS_FILE = "LFM-1b_LEs.txt"  # the member read from the official LFM-1b.zip
LFM1B_USERS_FILE = "LFM-1b_users.txt"
LFM1B_ITEM_FILE_COLUMNS = {  # LFM-1b_tracks.txt / _albums.txt / _artists.txt (no header)
    "track": ["track_id", "track_name", "artist_id"],
    "album": ["album_id", "album_name", "artist_id"],
    "artist": ["artist_id", "artist_name"],
}
KUAIRAND_COLUMNS = (
    "user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,is_forward,"
    "is_hate,long_view,play_time_ms,duration_ms,profile_stay_time,comment_stay_time,"
    "is_profile_enter,is_rand,tab"
).split(",")
SIGNALS = {"click": "is_click", "long_view": "long_view", "all": None}


def cut_label(max_len):
    """The cut in a dataset's name: 2000 -> ``2k``, 500 -> ``500``."""
    return f"{max_len // 1000}k" if max_len % 1000 == 0 else str(max_len)


def cut_dataset_name(template, length):
    """A grid's dataset for a context of ``length``: ``template`` with ``{cut}`` (the converters'
    label, ``kuairand-{cut}`` -> ``kuairand-2k``) or ``{length}``."""
    return template.format(cut=cut_label(length), length=length)


def cut_command(arguments, length, name, output_dir=None):
    """The converter's command that makes dataset ``name`` for a context of ``length``:
    ``arguments`` (the format, the raw files and the filters) cut at ``length`` + 3, the valid
    and test targets and a training target after ``length`` items (docs/converters.md), written
    to ``output_dir`` (None: the default ``dataset_atomics``)."""
    command = f"python -m recbole_mamba.atomics {arguments} --max-len {length + HELD_OUT} --name {name}"
    return command + (f" --output-dir {output_dir}" if output_dir else "")


def default_name(base, max_len=None, users=None, user_fraction=None):
    """Dataset name encoding the cut, e.g. ``kuairand-2k``, ``lfm1b-album-500-u1000``."""
    parts = [base]
    if max_len:
        parts.append(cut_label(max_len))
    if users:
        parts.append(f"u{users}")
    if user_fraction is not None and user_fraction < 1:
        parts.append(f"f{user_fraction:g}")
    return "-".join(parts)


class _Progress:
    """Prints rows read and rows/s to stderr every few seconds, and the total when reading ends."""

    def __init__(self, every=5.0):
        self.start = self.last = time.monotonic()
        self.rows = 0
        self.every = every

    def _print(self, what, now):
        rate = self.rows / max(now - self.start, 1e-9)
        print(f"{what}: {self.rows:,} rows read ({rate:,.0f} rows/s)", file=sys.stderr)

    def update(self, path, rows):
        self.rows += rows
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._print(os.path.basename(path), now)

    def finish(self, blocks):
        """``blocks`` (of (columns, rows read)), then the total read, as stats.json's rows_read."""
        yield from blocks
        self._print("all inputs", time.monotonic())


def _run(blocks, options):
    """Cut the events of ``blocks`` as ``options`` say: (columns or None, rows read, rows used)."""
    cut = LastEventsPerUser(options.max_len, options.drop_consecutive_duplicates)
    rows_read = rows_used = 0
    for columns, n_read in blocks:
        rows_read += n_read
        columns = narrowed(columns)
        if options.user_fraction is not None:
            mask = sampled_by_fraction(columns["user"], options.user_fraction, options.seed)
            columns = {k: v[mask] for k, v in columns.items()}
        rows_used += len(columns["user"])
        cut.add(columns)
    columns = cut.result()
    if columns is None:
        return None, rows_read, rows_used
    if options.users is not None:
        columns = first_users_by_hash(columns, options.users, options.seed)
    return filter_counts(columns, options.min_user_len, options.min_item_count), rows_read, rows_used


def _finish(name, output_dir, columns, inter_spec, stats, user_table=None, item_table=None):
    if columns is None or not len(columns["user"]):
        raise OptionError("no interactions left after filtering: nothing to write")
    users, user_ids = first_appearance(columns["user"])
    items, item_ids = first_appearance(columns["item"])
    stats.update(length_stats(np.bincount(users)[1:]))
    stats["items"] = len(item_ids)
    inter = [(header, columns[key]) for header, key in inter_spec]
    folder = write_dataset(output_dir, name, inter, stats, user_table, item_table)
    del inter
    times = columns["time"]
    columns.clear()  # the raw ids: written
    write_converted_store(folder, name, users, items, times, user_ids, item_ids)
    print(format_table(name, stats))
    return {**stats, "folder": folder}


def _common_stats(kind, inputs, name, options, rows_read, rows_used, bad):
    """stats.json's record of the conversion (``options``: what decided the kept events)."""
    return {
        "source": kind,
        "name": name,
        "inputs": [os.path.basename(p) for p in inputs],
        "options": options,
        "rows_read": rows_read,
        "rows_after_row_filters": rows_used,
        "bad_lines_skipped": bad.count,
        "first_bad_lines": bad.first,
    }


def _report_bad(bad):
    if bad.count:
        print(f"skipped {bad.count:,} bad lines; first: " + "; ".join(bad.first), file=sys.stderr)


# ---------------------------------------------------------------- LFM-1b


def _lfm1b_blocks(path, item, on_bad_lines, bad, progress):
    item_column = f"{item}_id"
    columns = {"user_id": 0, item_column: LFM1B_COLUMNS.index(item_column), "timestamp": 4}
    reader = DelimitedReader(path, "\t", len(LFM1B_COLUMNS), columns, 1, on_bad_lines, bad)
    with open_binary(path, LFM1B_EVENTS_FILE) as stream:
        empty = True
        for block in reader.read(stream):
            empty = False
            n = len(block["line"])
            progress.update(path, n)
            yield {"user": block["user_id"], "item": block[item_column], "time": block["timestamp"]}, n
        if empty:
            raise RawInputError(path, "empty file: no listening events")


def side_table(path, kept_ids, id_column, sep, names=None, out_id="user_id", member=None):
    """(header, columns) of a ``.user``/``.item`` file from a side file, for ``kept_ids`` only.

    ``names``: column names of a file without header (else its first line). ``member``: the file
    to read in a zip archive of many (see :func:`open_binary`). The id column is
    written as ``out_id:token``; a column whose every value is numeric as ``name:float``, any
    other as ``name:token``. Rows follow the id order.
    """
    with open_binary(path, member) as stream:
        try:
            frame = pd.read_csv(stream, sep=sep, dtype=str, keep_default_na=False, header=None if names else 0,
                                names=names, quoting=3, on_bad_lines="error")
        except (pd.errors.ParserError, ValueError) as e:
            raise RawInputError(path, f"cannot parse: {e}") from None
    frame.columns = [str(c).strip().lstrip("#").strip() for c in frame.columns]
    if id_column not in frame.columns:
        raise RawInputError(path, f"no column {id_column!r} (columns: {', '.join(frame.columns)})", line=1)
    ids = pd.to_numeric(frame[id_column], errors="coerce")
    if ids.isna().any():
        row = int(np.flatnonzero(ids.isna().to_numpy())[0])
        line = row + (1 if names else 2)
        raise RawInputError(path, f"{frame[id_column].iloc[row]!r} is not an integer", line=line, field=id_column)
    frame = frame.assign(**{id_column: ids.astype(np.int64)})
    frame = frame[frame[id_column].isin(kept_ids)].drop_duplicates(id_column).sort_values(id_column)
    header, columns = [f"{out_id}:token"], [frame[id_column].to_numpy()]
    for name in frame.columns:
        if name == id_column:
            continue
        values = frame[name]
        numeric = pd.to_numeric(values, errors="coerce")
        is_float = len(values) > 0 and not numeric.isna().any()
        header.append(f"{name}:{'float' if is_float else 'token'}")
        columns.append(numeric.to_numpy() if is_float else values.to_numpy())
    return header, columns


def convert_lfm1b(input_path, item="track", users_file=None, items_file=None, **options):
    """Convert ``LFM-1b_LEs.txt`` (tab-separated user_id, artist_id, album_id, track_id,
    unix seconds; no header; ``.gz``/``.zip`` read directly, and from the official multi-file
    LFM-1b.zip its LFM-1b_LEs.txt). ``users_file``: LFM-1b_users.txt (-> ``.user``);
    ``items_file``: LFM-1b_tracks/albums/artists.txt matching ``item`` (-> ``.item``); either may
    be the official zip too; ``options``: the fields of :class:`ConvertOptions`. Returns the stats dict."""
    if item not in ("track", "album", "artist"):
        raise OptionError(f"--item must be track, album or artist, got {item!r}")
    options = ConvertOptions(**options)
    base = "lfm1b" if item == "track" else f"lfm1b-{item}"
    name = options.name or default_name(base, options.max_len, options.users, options.user_fraction)
    bad = BadLines()
    progress = _Progress()
    columns, rows_read, rows_used = _run(
        progress.finish(_lfm1b_blocks(input_path, item, options.on_bad_lines, bad, progress)), options)
    _report_bad(bad)
    user_table = item_table = None
    if columns is not None and users_file is not None:
        user_table = side_table(users_file, np.unique(columns["user"]), "user_id", "\t", member=LFM1B_USERS_FILE)
    if columns is not None and items_file is not None:
        item_table = side_table(items_file, np.unique(columns["item"]), f"{item}_id", "\t",
                                names=LFM1B_ITEM_FILE_COLUMNS[item], out_id="item_id", member=f"LFM-1b_{item}s.txt")
    stats = _common_stats("LFM-1b", [input_path], name, dict(item=item, **options.cut()), rows_read,
                          rows_used, bad)
    spec = [("user_id:token", "user"), ("item_id:token", "item"), ("timestamp:float", "time")]
    return _finish(name, options.output_dir, columns, spec, stats, user_table, item_table)


# ---------------------------------------------------------------- KuaiRand


def _kuairand_header(path, stream, needed):
    first = stream.readline()
    if not first.strip():
        raise RawInputError(path, "empty file: expected a header line", line=1)
    header = [h.strip() for h in first.decode("utf-8", errors="replace").rstrip("\r\n").split(",")]
    for column in needed:
        if column not in header:
            close = difflib.get_close_matches(column, header, n=1)
            hint = f" (found {close[0]!r})" if close else ""
            sep = " — is the file comma-separated?" if len(header) == 1 else ""
            raise RawInputError(path, f"header has no column {column!r}{hint}{sep}", line=1, field=column)
    return header


def _kuairand_blocks(paths, signal, tabs, fields, on_bad_lines, bad, progress):
    flag = SIGNALS[signal]
    needed = ["user_id", "video_id", "time_ms"] + ([flag] if flag else []) + (["tab"] if tabs else [])
    needed += [f for f in fields if f not in needed]
    for path in paths:  # in the order given: ties in time keep file order
        with open_binary(path) as stream:
            header = _kuairand_header(path, stream, needed)
            reader = DelimitedReader(
                path, ",", len(header), {c: header.index(c) for c in needed}, 2, on_bad_lines, bad
            )
            for block in reader.read(stream):
                n = len(block["line"])
                progress.update(path, n)
                keep = np.ones(n, dtype=bool)
                if flag:
                    keep &= block[flag] == 1  # "0" is not clicked (the public script keeps it)
                if tabs:
                    keep &= np.isin(block["tab"], tabs)
                out = {
                    "user": block["user_id"][keep],
                    "item": block["video_id"][keep],
                    "time": block["time_ms"][keep],
                }
                out.update({f"x_{f}": block[f][keep] for f in fields})
                yield out, n


def convert_kuairand(inputs, signal="click", tabs=None, fields=(), user_features=None, item_features=None,
                     **options):
    """Convert KuaiRand ``log_standard_*.csv`` / ``log_random_*.csv`` files (comma-separated,
    with header; several files, ``.gz``/``.zip`` read directly). ``signal``: click keeps
    is_click == 1, long_view keeps long_view == 1, all keeps every exposure; ``fields``: extra
    numeric columns written as ``name:float``; ``user_features`` (user_features_27k.csv) and
    ``item_features`` (video_features_basic_27k.csv) -> ``.user`` and ``.item``; ``options``: the
    fields of :class:`ConvertOptions`. Timestamps are ``time_ms / 1000`` seconds."""
    if isinstance(inputs, str):
        inputs = [inputs]
    if signal not in SIGNALS:
        raise OptionError(f"--signal must be one of {', '.join(SIGNALS)}, got {signal!r}")
    unknown = [f for f in fields if f not in KUAIRAND_COLUMNS]
    if unknown:
        raise OptionError(f"unknown KuaiRand column(s) for --fields: {', '.join(unknown)}")
    options = ConvertOptions(**options)
    base = "kuairand" if signal == "click" else f"kuairand-{signal.replace('_', '')}"
    name = options.name or default_name(base, options.max_len, options.users, options.user_fraction)
    bad = BadLines()
    progress = _Progress()
    columns, rows_read, rows_used = _run(progress.finish(
        _kuairand_blocks(inputs, signal, tabs, list(fields), options.on_bad_lines, bad, progress)), options)
    _report_bad(bad)
    if columns is not None:
        columns["time"] = columns["time"] / 1000.0
    user_table = item_table = None
    if columns is not None and user_features is not None:
        user_table = side_table(user_features, np.unique(columns["user"]), "user_id", ",")
    if columns is not None and item_features is not None:
        item_table = side_table(item_features, np.unique(columns["item"]), "video_id", ",", out_id="item_id")
    cut = dict(signal=signal, tabs=list(tabs) if tabs else None, fields=list(fields), **options.cut())
    stats = _common_stats("KuaiRand", inputs, name, cut, rows_read, rows_used, bad)
    spec = [("user_id:token", "user"), ("item_id:token", "item"), ("timestamp:float", "time")]
    spec += [(f"{f}:float", f"x_{f}") for f in fields]
    return _finish(name, options.output_dir, columns, spec, stats, user_table, item_table)
