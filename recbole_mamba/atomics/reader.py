"""Streaming reader of delimited raw dumps, in blocks, with exact line numbers on bad input.

Each block of whole lines is parsed by pandas' C parser with explicit integer dtypes (the fast
path). Only a block that fails to parse is checked line by line in Python, which finds the first
bad line (``on_bad_lines='error'``) or drops every bad line and reports them (``'skip'``).
"""

import gzip
import io
import os
import posixpath
import zipfile
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recbole_mamba.atomics.errors import RawInputError

BLOCK_BYTES = 16 << 20
LISTED_MEMBERS = 12  # of a zip archive, in the error that refuses it


@dataclass
class BadLines:
    """Bad lines skipped with ``on_bad_lines='skip'``: a count and the first few, per file."""

    count: int = 0
    first: list = field(default_factory=list)

    def add(self, path, line, reason):
        self.count += 1
        if len(self.first) < 10:
            self.first.append(f"{os.path.basename(path)} line {line}: {reason}")


def open_binary(path, member=None):
    """A binary stream of ``path``; ``.gz`` files and ``.zip`` archives are read directly: a zip
    of one file, or of many (the official LFM-1b.zip) the file named ``member`` (its name in any
    folder of the archive). Another zip of many files is refused naming its files."""
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.endswith(".zip"):
        archive = zipfile.ZipFile(path)
        files = [m for m in archive.namelist() if not m.endswith("/")]
        if len(files) == 1:
            return archive.open(files[0])
        chosen = [m for m in files if member is not None and posixpath.basename(m) == member]
        if len(chosen) != 1:
            listed = ", ".join(files[:LISTED_MEMBERS]) + (f" and {len(files) - LISTED_MEMBERS} more"
                                                          if len(files) > LISTED_MEMBERS else "")
            wanted = ((f"with {len(chosen)} files named {member}" if chosen else f"with no file named {member}")
                      if member else "(one expected)")
            raise RawInputError(path, f"a zip archive of {len(files)} files {wanted}: {listed or 'none'}")
        return archive.open(chosen[0])
    return open(path, "rb")


def iter_blocks(stream, block_bytes=BLOCK_BYTES):
    """Yield blocks of whole lines (bytes); the last one may lack a final newline."""
    rest = b""
    while True:
        data = stream.read(block_bytes)
        if not data:
            if rest:
                yield rest
            return
        data = rest + data
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            rest = data
            continue
        rest = data[cut:]
        yield data[:cut]


class DelimitedReader:
    """Reads ``columns`` (name -> index) as int64 from a delimited file, block by block.

    ``n_fields``: fields every line must have. ``first_line``: physical number of the first data
    line (2 after a header). Yields dicts of numpy arrays plus ``'line'`` (physical line numbers).
    """

    def __init__(self, path, sep, n_fields, columns, first_line, on_bad_lines, bad_lines):
        self.path, self.sep, self.n_fields = path, sep, n_fields
        self.columns = dict(columns)
        self.first_line = first_line
        self.on_bad_lines = on_bad_lines
        self.bad_lines = bad_lines

    def read(self, stream):
        line = self.first_line
        for block in iter_blocks(stream):
            n_lines = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
            yield self._parse(block, line, n_lines)
            line += n_lines

    def _parse(self, block, first_line, n_lines):
        try:
            return self._parse_fast(block, first_line, n_lines)
        except (ValueError, pd.errors.ParserError):
            return self._parse_checked(block, first_line)

    def _parse_fast(self, block, first_line, n_lines):
        names = sorted(self.columns, key=self.columns.get)
        frame = pd.read_csv(
            io.BytesIO(block), sep=self.sep, header=None, usecols=[self.columns[n] for n in names],
            names=None, dtype=np.int64, engine="c", skip_blank_lines=False, na_filter=False,
        )
        if n_lines != len(frame):
            raise ValueError("line count mismatch")
        if frame.shape[1] != len(names):
            raise ValueError("column count mismatch")
        # pandas fills missing trailing fields silently: check the field count of every line
        sep = self.sep.encode()
        lines = len(frame)
        if block.count(sep) != lines * (self.n_fields - 1):
            raise ValueError("field count mismatch")
        out = {name: frame.iloc[:, i].to_numpy() for i, name in enumerate(names)}
        out["line"] = np.arange(first_line, first_line + lines, dtype=np.int64)
        return out

    def _parse_checked(self, block, first_line):
        values = {name: [] for name in self.columns}
        lines = []
        text = block.decode("utf-8", errors="replace")
        raw_lines = text.split("\n")
        if raw_lines and raw_lines[-1] == "":
            raw_lines.pop()  # after the final newline
        for offset, raw in enumerate(raw_lines):
            number = first_line + offset
            problem = self._check_line(raw)
            if problem is not None:
                message, field_name = problem
                if self.on_bad_lines == "error":
                    raise RawInputError(self.path, message, line=number, field=field_name)
                where = f"field {field_name!r}: " if field_name is not None else ""
                self.bad_lines.add(self.path, number, where + message)
                continue
            parts = raw.split(self.sep)
            for name, index in self.columns.items():
                values[name].append(int(parts[index]))
            lines.append(number)
        out = {name: np.asarray(v, dtype=np.int64) for name, v in values.items()}
        out["line"] = np.asarray(lines, dtype=np.int64)
        return out

    def _check_line(self, raw):
        """(message, field name or None) for a bad line, None for a good one."""
        parts = raw.split(self.sep)
        if len(parts) != self.n_fields:
            shown = raw if len(raw) <= 60 else raw[:57] + "..."
            return (
                f"expected {self.n_fields} fields separated by {self.sep!r}, found {len(parts)}: {shown!r}",
                None,
            )
        for name, index in self.columns.items():
            value = parts[index].strip()
            try:
                int(value)
            except ValueError:
                return f"{value!r} is not an integer", name
        return None
