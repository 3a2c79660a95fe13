"""Checking a RecBole atomic file as carefully as the converters check raw dumps.

RecBole casts each loaded column to its declared type (``token`` and ``token_seq`` to strings,
``float`` to float64, ``float_seq`` to lists of floats) and fails, where a value does not cast,
with pandas' error and no line number; a row with a field missing is filled silently and fails
later. Here every line of the columns a run loads is checked: its number of fields against the
header's, each ``float`` / ``float_seq`` value, and a value in the user, item and time fields. The
problems come back as one line naming the file, then the first ten (line, field, value) and how
many there are in all.

Blocks of lines are checked with pandas' C parser and vectorised tests; only a block with a
problem is read again line by line, for the exact line numbers.
"""

import csv
import io
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recbole_mamba.atomics.reader import iter_blocks
from recbole_mamba.errors import InputError

TYPES = ("token", "float", "token_seq", "float_seq")
FIRST = 10  # problems quoted in the message


class AtomicFileError(InputError):
    """An atomic file RecBole cannot load, named with its file and lines."""


@dataclass
class Problems:
    """What is wrong with a file: ``count`` problems, the first :data:`FIRST` described."""

    path: str
    count: int = 0
    first: list = field(default_factory=list)

    def add(self, line, message):
        self.count += 1
        if len(self.first) < FIRST:
            self.first.append(f"line {line}{message}")

    def message(self):
        more = f" ({self.count:,} in all)" if self.count > len(self.first) else ""
        return f"{self.path}: {'; '.join(self.first)}{more}"

    def raise_any(self):
        if self.count:
            raise AtomicFileError(self.message())


def header_fields(path, separator):
    """[(name, type)] of an atomic file's header; an :class:`AtomicFileError` where a column is
    not ``name:type`` of a RecBole type, saying so when the file looks separated by another
    character than ``field_separator``."""
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\r\n")
    columns = header.split(separator)
    if len(columns) == 1:
        for other, name in ((",", "comma"), (";", "semicolon"), ("\t", "tab"), (" ", "space")):
            parts = header.split(other)
            if other != separator and len(parts) > 1 and all(":" in part for part in parts):
                raise AtomicFileError(
                    f"{path} line 1: the header looks {name}-separated ({header[:60]!r}); atomic files "
                    f"are separated by field_separator {separator!r}: convert the file, or set "
                    f"field_separator: {other!r} in the dataset's yaml (or --field_separator)")
    fields = []
    for column in columns:
        name, colon, kind = column.partition(":")
        if not colon or kind not in TYPES:
            raise AtomicFileError(f"{path} line 1: header column {column!r} is not name:type with a type of "
                                  f"{', '.join(TYPES)}")
        fields.append((name, kind))
    return fields


def _bad_floats(values):
    """Mask of non-empty strings that are not numbers: (n,) object -> (n,) bool."""
    text = pd.Series(values, dtype=object)
    parsed = pd.to_numeric(text, errors="coerce")
    return (parsed.isna() & (text.str.strip() != "") & (text.str.strip().str.lower() != "nan")).to_numpy()


def _bad_float_seq(value, seq_separator):
    try:
        [float(v) for v in value.split(seq_separator) if v]
        return False
    except ValueError:
        return True


class AtomicFileCheck:
    """Checks the lines of ``path`` (``fields``: the header's [(name, type)]) for the columns in
    ``loaded`` (names; None for all), the ones in ``required`` needing a value."""

    def __init__(self, path, separator, fields, loaded=None, required=(), seq_separator=" "):
        self.path, self.separator, self.seq_separator = path, separator, seq_separator
        self.n_fields = len(fields)
        self.columns = [(i, name, kind) for i, (name, kind) in enumerate(fields)
                        if loaded is None or name in loaded]
        self.required = set(required)

    def run(self):
        """The file's :class:`Problems` (every data line read)."""
        problems = Problems(self.path)
        line = 2
        with open(self.path, "rb") as stream:
            stream.readline()
            for block in iter_blocks(stream):
                n_lines = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
                if not self._block_is_clean(block, n_lines):
                    self._check_lines(block, line, problems)
                line += n_lines
        return problems

    def _block_is_clean(self, block, n_lines):
        """Whether a block has no problem, tested at pandas' speed (False: look line by line)."""
        sep = self.separator.encode()
        if block.count(sep) != n_lines * (self.n_fields - 1) or b'"' in block or b"\r" in block:
            return False
        try:
            frame = pd.read_csv(io.BytesIO(block), sep=self.separator, header=None, dtype=str, engine="c",
                                usecols=[i for i, _, _ in self.columns], na_filter=False, skip_blank_lines=False)
        except (ValueError, pd.errors.ParserError):
            return False
        if len(frame) != n_lines:
            return False
        for i, name, kind in self.columns:
            values = frame[i].to_numpy()
            if name in self.required and (np.char.str_len(values.astype(str)) == 0).any():
                return False
            if kind == "float" and _bad_floats(values).any():
                return False
            if kind == "float_seq" and any(_bad_float_seq(v, self.seq_separator) for v in values):
                return False
        return True

    def _check_lines(self, block, first_line, problems):
        text = block.decode("utf-8", errors="replace")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        for offset, raw in enumerate(lines):
            number = first_line + offset
            raw = raw.rstrip("\r")
            if not raw:
                continue  # a blank line, which RecBole skips
            if len(self.separator) == 1:  # quotes as pandas reads them
                parts = next(csv.reader([raw], delimiter=self.separator)) if raw else [""]
            else:
                parts = raw.split(self.separator)
            if len(parts) != self.n_fields:
                shown = raw if len(raw) <= 60 else raw[:57] + "..."
                problems.add(number, f": {len(parts)} fields, the header has {self.n_fields}: {shown!r}")
                continue
            for i, name, kind in self.columns:
                value = parts[i].strip()
                if name in self.required and not value:
                    problems.add(number, f", field {name!r}: empty (the user, item and time fields need a value)")
                elif kind == "float" and _bad_floats(np.array([value], dtype=object))[0]:
                    problems.add(number, f", field {name!r}: {value!r} is not a float")
                elif kind == "float_seq" and _bad_float_seq(value, self.seq_separator):
                    problems.add(number, f", field {name!r}: {value!r} is not a list of floats")


def fields_match(path, separator, n_fields):
    """Whether the file's separators number exactly ``n_fields - 1`` a line (a pass over its bytes,
    at memory speed); False also where quotes or blank lines make the count differ without a
    problem, which :class:`AtomicFileCheck` then tells apart."""
    sep = separator.encode()
    separators = lines = 0
    with open(path, "rb") as stream:
        stream.readline()
        for block in iter_blocks(stream):
            separators += block.count(sep)
            lines += block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
    return separators == lines * (n_fields - 1)


def check_file(path, separator, loaded=None, required=(), seq_separator=" "):
    """:class:`Problems` of an atomic file (its header checked first, an error of its own)."""
    fields = header_fields(path, separator)
    return AtomicFileCheck(path, separator, fields, loaded, required, seq_separator).run()


def id_fields(suffix, user, item, time):
    """The fields of a ``.inter``, ``.user`` or ``.item`` file that need a value in every row."""
    fields = {"inter": (user, item, time), "user": (user,), "item": (item,)}.get(suffix, ())
    return [field for field in fields if field]


def load_columns(config, suffix):
    """The columns RecBole loads of ``<dataset>.<suffix>`` (None: all), as ``load_col`` says."""
    load_col = config["load_col"]
    if isinstance(load_col, dict):
        return load_col.get(suffix) if suffix in load_col else []
    return None
