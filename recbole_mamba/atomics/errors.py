"""Errors of the converters: each names the file, the line and the offending field, or the option."""

from recbole_mamba.errors import InputError


class RawInputError(InputError):
    """A raw input that cannot be converted, e.g. ``log.csv line 7, field 'time_ms': 'abc' is
    not an integer``."""

    def __init__(self, path, message, line=None, field=None):
        where = f"{path}" + (f" line {line}" if line is not None else "")
        where += f", field {field!r}" if field is not None else ""
        super().__init__(f"{where}: {message}")
        self.path, self.line, self.field = path, line, field


class OptionError(InputError):
    """A converter option that cannot work, e.g. ``--user-fraction must be in (0, 1], got 2``."""
