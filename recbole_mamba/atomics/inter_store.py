"""The store of an atomic ``.inter`` file, written a chunk of rows at a time: what RecBole's
loading followed by :func:`~recbole_mamba.atomics.store.write_store` gives, without RecBole's
in-memory dataset (about 150-180 bytes an interaction).

The file is read as RecBole reads it (the columns it loads, ``str`` for tokens and float64 for
floats, pandas' C parser: one-character separators only), ``chunk_rows`` rows at a time; each
chunk's user and item tokens are numbered by first appearance against the tokens seen so far
(pyarrow's hash tables over UTF-8 arrays, no Python ``str`` a token), as RecBole's remapping
numbers them. Two passes: the first numbers the users (int32 a row), the second puts each row's
item id (int32) and timestamp (float64) in its user's place in file order (a counting sort): 16
bytes an interaction at most, with the tokens' bytes. Each block of users is then sorted by
float32 time, as RecBole sorts, and appended to the store's files. A file RecBole would change or
refuse on loading (values missing: its loading names them) is not streamed: :class:`NotStreamable`
says why and the caller loads the atomic file.
"""

import numpy as np
import pandas as pd

from recbole_mamba.atomics.reader import iter_blocks
from recbole_mamba.atomics.store import write_store_files
from recbole_mamba.atomics.tokens import Utf8Tokens

CHUNK_ROWS = 1 << 19  # rows parsed at a time (pandas holds a Python str a token of them while parsing),
# and rows of users sorted at a time


class NotStreamable(Exception):
    """The file cannot be streamed into a store as RecBole would load it (the message says why)."""


class _FirstAppearance:
    """Ids from 1 of tokens in order of first appearance, over chunks: the distinct tokens so far
    as one pyarrow string array."""

    def __init__(self):
        import pyarrow as pa

        self.tokens = pa.array([], type=pa.large_string())

    def codes(self, column):
        """(len(column),) int32: the ids of a chunk's tokens (a pandas column of str)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        array = pa.array(column, type=pa.large_string())  # pandas' own arrow column, or a copy of its str
        encoded = pc.dictionary_encode(array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array)
        distinct = encoded.dictionary  # the chunk's tokens, in order of first appearance
        known = pc.index_in(distinct, value_set=self.tokens)
        new = known.is_null().to_numpy(zero_copy_only=False)
        ids = known.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        ids[new] = len(self.tokens) + np.arange(np.count_nonzero(new))
        if new.any():
            self.tokens = pa.concat_arrays([self.tokens, distinct.filter(pa.array(new))])
        if len(self.tokens) >= np.iinfo(np.int32).max:
            raise NotStreamable(f"{len(self.tokens):,} distinct tokens do not fit the store's int32 ids")
        return (ids[encoded.indices.to_numpy(zero_copy_only=False)] + 1).astype(np.int32)

    def table(self):
        """The :class:`~recbole_mamba.atomics.tokens.Utf8Tokens` of ``[PAD]`` and the tokens."""
        array = self.tokens
        offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset:array.offset + len(array) + 1]
        data = array.buffers()[2]
        blob = np.frombuffer(data, dtype=np.uint8)[offsets[0]:offsets[-1]] if data is not None else np.zeros(0, np.uint8)
        pad = np.frombuffer(b"[PAD]", dtype=np.uint8)
        return Utf8Tokens(np.concatenate([pad, blob]), np.r_[np.int64(0), len(pad) + offsets - offsets[0]])


def _line_bound(path):
    """An upper bound of the rows after the header: its newlines, and a last line without one."""
    lines = 0
    with open(path, "rb") as stream:
        stream.readline()
        for block in iter_blocks(stream):
            lines += block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
    return lines


def _chunks(source, loaded, separator, encoding, chunk_rows):
    """The file's rows as RecBole's loading parses them (``loaded``: the columns it loads),
    ``chunk_rows`` at a time; :class:`NotStreamable` where a value is missing or pandas cannot
    read it so."""
    dtype = {column: np.float64 if column.endswith(":float") else str for column in loaded}
    try:
        with pd.read_csv(source, delimiter=separator, usecols=list(loaded), dtype=dtype, encoding=encoding,
                         engine="c", chunksize=chunk_rows) as reader:
            for chunk in reader:
                if chunk.isna().to_numpy().any():
                    raise NotStreamable("values are missing (RecBole's loading names them)")
                yield chunk
    except (ValueError, pd.errors.ParserError) as error:
        raise NotStreamable(f"pandas cannot read it in chunks ({str(error).splitlines()[0]})") from None


def stream_inter_store(dataset_folder, name, source, loaded, fields, separator, encoding, loading,
                       chunk_rows=CHUNK_ROWS):
    """Write ``<dataset_folder>/<name>.store`` from the atomic file ``source``, as RecBole loads
    it: ``loaded``, its header's columns RecBole loads (``name:type``, in file order);
    ``fields``: the (user, item, time) field names; ``separator``, ``encoding``: RecBole's
    ``field_separator`` and ``encoding``; ``loading``: the store's
    :func:`~recbole_mamba.atomics.store.loading_settings`. Returns the store's folder; a
    :class:`NotStreamable` where the file cannot be streamed, before anything is written."""
    if len(separator) != 1:
        raise NotStreamable(f"field_separator {separator!r} is not one character")
    types = dict(column.split(":", 1) for column in loaded)
    wanted = [f"{field}:{kind}" for field, kind in zip(fields, ("token", "token", "float"), strict=True)]
    if not set(wanted) <= set(loaded):
        raise NotStreamable(f"the user, item and time fields are not {', '.join(wanted)} in {source}'s header")
    other = sorted(f"{field}:{kind}" for field, kind in types.items() if kind.endswith("seq"))
    if other:
        raise NotStreamable(f"it loads sequence fields ({', '.join(other)})")
    # first pass: the users' ids, and so where each user's rows go
    users = np.empty(_line_bound(source), dtype=np.int32)
    user_ids, n = _FirstAppearance(), 0
    for chunk in _chunks(source, loaded, separator, encoding, chunk_rows):
        users[n:n + len(chunk)] = user_ids.codes(chunk[wanted[0]])
        n += len(chunk)
    users = users[:n]
    user_tokens = user_ids.table()
    del user_ids
    offsets = np.zeros(len(user_tokens) + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=len(user_tokens)), out=offsets[1:])
    # second pass: each row's item id and time put in its user's place, in file order (a counting sort)
    items, times = np.empty(n, dtype=np.int32), np.empty(n, dtype=np.float64)
    item_ids, cursor, start = _FirstAppearance(), offsets[:-1].copy(), 0
    for chunk in _chunks(source, loaded, separator, encoding, chunk_rows):
        chunk_users = users[start:start + len(chunk)]
        order = np.argsort(chunk_users, kind="stable")
        sorted_users = chunk_users[order]
        place = cursor[sorted_users] + np.arange(len(order)) - np.searchsorted(sorted_users, sorted_users)
        items[place] = item_ids.codes(chunk[wanted[1]])[order]
        times[place] = chunk[wanted[2]].to_numpy()[order]
        cursor += np.bincount(chunk_users, minlength=len(user_tokens))
        start += len(chunk)
    if start != n:
        raise NotStreamable(f"{source} changed while it was read ({n:,} rows, then {start:,})")
    del users
    item_tokens = item_ids.table()
    del item_ids

    def write_rows(items_file, times_file):
        start = 1  # user 0 is [PAD], with no rows
        while start < len(user_tokens):
            stop = max(start + 1, int(np.searchsorted(offsets, offsets[start] + chunk_rows, side="right")) - 1)
            rows = slice(offsets[start], offsets[stop])
            user = np.repeat(np.arange(stop - start), np.diff(offsets[start:stop + 1]))
            order = np.lexsort((times[rows].astype(np.float32), user))  # as RecBole sorts: stable
            items[rows][order].tofile(items_file)
            times[rows][order].tofile(times_file)
            start = stop

    return write_store_files(dataset_folder, name, offsets, write_rows, len(item_tokens) - 1, user_tokens,
                             item_tokens, source, loading)


def loaded_columns(path, separator, encoding, load_col):
    """The ``name:type`` columns of an ``.inter`` file's header (split as RecBole splits it) that
    RecBole loads with ``load_col`` (None: all)."""
    with open(path, encoding=encoding) as f:
        columns = f.readline()[:-1].split(separator)
    if load_col is None:
        return columns
    return [column for column in columns if column.split(":", 1)[0] in load_col["inter"]]

