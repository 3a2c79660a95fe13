"""The interaction store: a dataset's interactions as flat arrays that every process on a machine
memory-maps, so the page cache holds them once and opening costs no parsing.

A folder ``<dataset folder>/<name>.store/`` beside the atomic files:

- ``offsets.i8``  (users + 1,) int64: user id ``u``'s interactions are ``[offsets[u], offsets[u+1])``
- ``items.i4``    (interactions,) int32: item ids, by user, then time (as RecBole sorts them: its
  timestamps are float32, and ties keep file order)
- ``times.f8``    (interactions,) float64: their timestamps
- ``user_tokens`` / ``item_tokens`` ``.bin`` + ``.i8``: each id's token, UTF-8, and its offsets
- ``meta.json``   counts, the file sizes, the atomic file it was made from (size, modification
  time and a fingerprint of its ends) and the loading settings it holds the result of

Ids are RecBole's: 0 is ``[PAD]``, then tokens numbered in order of first appearance in the
``.inter`` file (after RecBole's filters), as RecBole's remapping numbers them. The converters
write the store with their atomic files; the data layer writes it from RecBole's loading of
other atomic files (:mod:`recbole_mamba.data.store_dataset`). A store is written to a temporary
folder and renamed into place whole; :func:`open_store` refuses, in one line naming the file,
one that does not match its atomic file or its settings, or whose files are not whole.

Only numpy: the converters write it without torch or RecBole.
"""

import hashlib
import json
import os
import shutil
import tempfile

import numpy as np

from recbole_mamba.atomics.tokens import Utf8Tokens
from recbole_mamba.errors import InputError
from recbole_mamba.files import as_created

FORMAT = "recbole-mamba-store/1"
STORE_MODES = ("auto", "on", "rebuild", "off")  # interaction_store: see recbole_mamba.data.store_dataset
FINGERPRINT_BYTES = 1 << 20  # hashed at each end of the atomic file


class StoreError(InputError):
    """A store that cannot be used: missing, not whole, or not made from the atomic file and
    settings of this run."""


def store_folder(dataset_folder, name):
    return os.path.join(dataset_folder, f"{name}.store")


def source_fingerprint(path):
    """{size, mtime_ns, ends}: what identifies an atomic file without reading it whole (``ends``:
    SHA-1 of its first and last MiB)."""
    stat = os.stat(path)
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        digest.update(f.read(FINGERPRINT_BYTES))
        if stat.st_size > FINGERPRINT_BYTES:
            f.seek(max(FINGERPRINT_BYTES, stat.st_size - FINGERPRINT_BYTES))
            digest.update(f.read(FINGERPRINT_BYTES))
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ends": digest.hexdigest()}


def loading_settings(user_field, item_field, time_field, field_separator, filters=None):
    """What a store holds the result of: the fields and separator the atomic file is read with,
    and RecBole's filters that drop interactions ({} where none drops any: the file as written)."""
    return {"fields": [user_field, item_field, time_field], "field_separator": field_separator,
            "filters": dict(sorted((filters or {}).items()))}


def write_store(dataset_folder, name, users, items, times, user_tokens, item_tokens, source, loading):
    """Write ``<dataset_folder>/<name>.store`` from (interactions,) arrays ``users`` and ``items``
    (RecBole ids, 1-based) and ``times``, sorted by user and then time; ``user_tokens`` and
    ``item_tokens`` give each id's token (index 0: ``[PAD]``), as a
    :class:`~recbole_mamba.atomics.tokens.Utf8Tokens` or any sequence; ``source``: the atomic
    file it was made from; ``loading``: :func:`loading_settings`. Returns the store's folder."""
    users = np.asarray(users)
    user_tokens, item_tokens = (t if isinstance(t, Utf8Tokens) else Utf8Tokens.from_strings(t)
                                for t in (user_tokens, item_tokens))
    n_users, n_items = len(user_tokens), len(item_tokens)
    if len(users) and (np.any(users[1:] < users[:-1]) or users[0] < 1 or users[-1] >= n_users):
        raise ValueError("users must be sorted ids in [1, len(user_tokens))")
    offsets = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=offsets[1:])

    def write_rows(items_file, times_file):
        np.asarray(items, dtype=np.int32).tofile(items_file)
        np.asarray(times, dtype=np.float64).tofile(times_file)

    items_seen = int(np.count_nonzero(np.bincount(np.asarray(items), minlength=n_items)))
    return write_store_files(dataset_folder, name, offsets, write_rows, items_seen, user_tokens, item_tokens,
                             source, loading)


def write_store_files(dataset_folder, name, offsets, write_rows, items_seen, user_tokens, item_tokens, source,
                      loading):
    """Write a store (see :func:`write_store`) whose interactions ``write_rows(items_file,
    times_file)`` writes (binary files, int32 and float64, by user and time); ``offsets``: (users
    + 1,) int64; ``items_seen``: items with an interaction; tokens as
    :class:`~recbole_mamba.atomics.tokens.Utf8Tokens`."""
    n_users, n_items = len(user_tokens), len(item_tokens)
    if n_items > np.iinfo(np.int32).max:
        raise ValueError(f"{n_items:,} items do not fit the store's int32 ids")
    target = store_folder(dataset_folder, name)
    tmp = tempfile.mkdtemp(prefix=f".{name}.store-", dir=dataset_folder)
    as_created(tmp)  # readable by whoever may read the atomic files beside it
    try:
        offsets.tofile(os.path.join(tmp, "offsets.i8"))
        with open(os.path.join(tmp, "items.i4"), "wb") as items_file, \
                open(os.path.join(tmp, "times.f8"), "wb") as times_file:
            write_rows(items_file, times_file)
        user_tokens.write(tmp, "user")
        item_tokens.write(tmp, "item")
        meta = {"format": FORMAT, "dataset": name, "users": n_users, "items": n_items,
                "interactions": int(offsets[-1]), "items_seen": items_seen,
                "max_user_interactions": int(np.diff(offsets).max(initial=0)),
                "source": {"file": os.path.basename(source), **source_fingerprint(source)}, "loading": loading,
                "files": {f: os.path.getsize(os.path.join(tmp, f)) for f in sorted(os.listdir(tmp))}}
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True)
        old = None
        if os.path.exists(target):
            old = tempfile.mkdtemp(prefix=f".{name}.store-old-", dir=dataset_folder)
            os.replace(target, os.path.join(old, "store"))
        try:
            os.rename(tmp, target)
        except OSError:  # another process put its store there first: the same data, keep that one
            if not os.path.isdir(target):
                raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def write_converted_store(folder, name, users, items, times, user_ids, item_ids):
    """The store of a dataset a converter has just written to ``folder``: its ``.inter`` rows in
    file order as ``users`` and ``items`` codes numbered by first appearance
    (:func:`~recbole_mamba.atomics.tokens.first_appearance`) of raw integer ids ``user_ids`` and
    ``item_ids``, and ``times``; settings as the converter's yaml sets them. The converters write
    rows sorted by user and time, the order the store keeps: they are sorted here only where not."""
    t32 = np.asarray(times, np.float32)  # RecBole's timestamps: sorted by user, then float32 time, stable
    step = np.diff(users)
    if not np.all((step > 0) | ((step == 0) & (t32[1:] >= t32[:-1]))):
        order = np.lexsort((t32, users))
        users, items, times = users[order], items[order], np.asarray(times)[order]
    del t32, step
    return write_store(folder, name, users, items, np.asarray(times, np.float64),
                       Utf8Tokens.from_integers(user_ids), Utf8Tokens.from_integers(item_ids),
                       os.path.join(folder, f"{name}.inter"),
                       loading_settings("user_id", "item_id", "timestamp", "\t"))


class InteractionStore:
    """An opened store (:func:`open_store`): ``offsets`` and ``items`` memory-mapped (copy on
    write: never written back), ``user_tokens`` / ``item_tokens`` (memory-mapped
    :class:`~recbole_mamba.atomics.tokens.Utf8Tokens`),
    ``meta``; timestamps read where asked (:meth:`times_at`)."""

    def __init__(self, folder, meta):
        self.folder, self.meta = folder, meta
        self.offsets = np.memmap(os.path.join(folder, "offsets.i8"), dtype=np.int64, mode="c")
        self.items = (np.memmap(os.path.join(folder, "items.i4"), dtype=np.int32, mode="c")
                      if meta["interactions"] else np.zeros(0, np.int32))
        self.user_tokens, self.item_tokens = Utf8Tokens.open(folder, "user"), Utf8Tokens.open(folder, "item")

    def times_at(self, index):
        """(len(index),) float64: the timestamps of interactions ``index``, read through a map
        dropped afterwards (so its pages do not stay in this process)."""
        index = np.asarray(index, dtype=np.int64)
        if not len(index):
            return np.zeros(0, np.float64)
        times = np.memmap(os.path.join(self.folder, "times.f8"), dtype=np.float64, mode="r")
        try:
            return np.array(times[index])
        finally:
            del times

    @property
    def interactions(self):
        return self.meta["interactions"]

    def lengths(self):
        """(users,) int64: each user's number of interactions (user 0, ``[PAD]``: none)."""
        return np.diff(self.offsets)

    def nbytes(self):
        """Bytes of its files."""
        return sum(self.meta["files"].values())


def _refuse(path, why):
    raise StoreError(f"{path}: {why}: --interaction_store=rebuild writes it again from the atomic file, "
                     "--interaction_store=off reads the atomic file without it")


def open_store(dataset_folder, name, source, loading):
    """The store of ``name`` in ``dataset_folder``, checked against its ``source`` atomic file
    and the run's ``loading`` settings (:func:`loading_settings`); None where there is none; a
    :class:`StoreError` naming the file where it does not match or is not whole."""
    folder = store_folder(dataset_folder, name)
    meta_path = os.path.join(folder, "meta.json")
    if not os.path.isdir(folder):
        return None
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as error:
        _refuse(meta_path, f"not a readable store description ({type(error).__name__})")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        _refuse(meta_path, f"not a {FORMAT} store")
    if meta["dataset"] != name:
        _refuse(meta_path, f"the store of another dataset ({meta['dataset']!r})")
    for file, size in meta["files"].items():
        path = os.path.join(folder, file)
        found = os.path.getsize(path) if os.path.exists(path) else None
        if found != size:
            _refuse(path, "missing" if found is None else f"truncated or changed ({found:,} bytes, written {size:,})")
    recorded, now = meta["source"], source_fingerprint(source)
    if os.path.basename(source) != recorded["file"] or {k: recorded[k] for k in now} != now:
        changed = [k for k in ("size", "mtime_ns", "ends") if recorded.get(k) != now[k]]
        _refuse(folder, f"made from another {os.path.basename(source)} (its {', '.join(changed)} changed since)")
    if meta["loading"] != loading:
        diff = sorted(k for k in set(meta["loading"]) | set(loading) if meta["loading"].get(k) != loading.get(k))
        _refuse(folder, f"made with other loading settings ({', '.join(diff)}: {meta['loading']} then, {loading} now)")
    return InteractionStore(folder, meta)
