"""The store of an atomic ``.inter`` file, written a chunk of rows at a time: what RecBole's
loading followed by :func:`~recbole_mamba.atomics.store.write_store` gives, without RecBole's
in-memory dataset (about 150-180 bytes an interaction).

The file is read as RecBole reads it (the columns it loads, ``str`` for tokens and float64 for
floats, pandas' C parser: one-character separators only), ``chunk_rows`` rows at a time; each
chunk's user and item tokens are numbered by first appearance against the tokens seen so far
(:class:`~recbole_mamba.atomics.tokens.FirstAppearance`: their bytes and sorted hashes, no Python
``str`` a token), as RecBole's remapping numbers them. Two passes: the first numbers the users
and counts their rows, the second numbers each row's user again, and puts its item id (int32)
and timestamp (float64) in its user's place in file order (a counting sort): 12 bytes an
interaction, with the tokens' bytes and a chunk. Each block of users is then sorted by float32
time, as RecBole sorts, and appended to the store's files. A file RecBole would change or refuse
on loading (values missing: its loading names them) is not streamed: :class:`NotStreamable` says
why and the caller loads the atomic file.
"""

import numpy as np
import pandas as pd

from recbole_mamba.atomics.store import write_store_files
from recbole_mamba.atomics.tokens import FirstAppearance, Utf8Tokens

CHUNK_ROWS = 1 << 18  # rows parsed at a time (pandas holds a Python str a token of them while parsing),
# and rows of users sorted at a time: 2^19 held 0.12 GiB more at 32 M interactions, no faster


class NotStreamable(Exception):
    """The file cannot be streamed into a store as RecBole would load it (the message says why)."""


def _codes(numbering, column, add=True):
    """(len(column),) int64: the ids of a chunk's tokens (a pandas column of str) in
    ``numbering`` (a :class:`~recbole_mamba.atomics.tokens.FirstAppearance`), the chunk's distinct
    tokens found through pyarrow's hash table of the chunk alone."""
    import pyarrow as pa
    import pyarrow.compute as pc

    array = pa.array(column, type=pa.large_string())  # pandas' own arrow column, or a copy of its str
    encoded = pc.dictionary_encode(array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array)
    distinct = encoded.dictionary  # the chunk's tokens, in order of first appearance
    offsets = np.frombuffer(distinct.buffers()[1], dtype=np.int64)[distinct.offset:distinct.offset + len(distinct) + 1]
    data = distinct.buffers()[2]
    blob = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    try:
        ids = numbering.number(Utf8Tokens(blob, offsets), add=add)
    except OverflowError as error:
        raise NotStreamable(f"{error}: the store's ids are int32") from None
    return ids[encoded.indices.to_numpy(zero_copy_only=False)]


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
    # first pass: the users' ids, and their rows' count: where each user's rows go
    user_ids, counts = FirstAppearance(), np.zeros(0, dtype=np.int64)
    for chunk in _chunks(source, loaded, separator, encoding, chunk_rows):
        chunk_counts = np.bincount(_codes(user_ids, chunk[wanted[0]]), minlength=len(user_ids))
        counts = np.concatenate([counts, np.zeros(len(chunk_counts) - len(counts), dtype=np.int64)])
        counts += chunk_counts
    user_tokens = user_ids.table()
    offsets = np.zeros(len(user_tokens) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    n = int(offsets[-1])
    # second pass: each row's item id and time put in its user's place, in file order (a counting sort)
    items, times = np.empty(n, dtype=np.int32), np.empty(n, dtype=np.float64)
    item_ids, cursor, start = FirstAppearance(), offsets[:-1].copy(), 0
    for chunk in _chunks(source, loaded, separator, encoding, chunk_rows):
        chunk_users = _codes(user_ids, chunk[wanted[0]], add=False)
        chunk_counts = np.bincount(np.maximum(chunk_users, 0), minlength=len(user_tokens))
        if chunk_users.min(initial=0) < 0 or np.any(cursor + chunk_counts > offsets[1:]):
            raise NotStreamable(f"{source} changed while it was read (rows of other or new users)")
        order = np.argsort(chunk_users, kind="stable")
        sorted_users = chunk_users[order]
        place = cursor[sorted_users] + np.arange(len(order)) - np.searchsorted(sorted_users, sorted_users)
        items[place] = _codes(item_ids, chunk[wanted[1]])[order]
        times[place] = chunk[wanted[2]].to_numpy()[order]
        cursor += chunk_counts
        start += len(chunk)
    if start != n:
        raise NotStreamable(f"{source} changed while it was read ({n:,} rows, then {start:,})")
    item_tokens = item_ids.table()
    del user_ids, item_ids

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

