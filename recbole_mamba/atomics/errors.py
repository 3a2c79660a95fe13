"""Errors of the converters: each names the file, the line and the offending field."""


class RawInputError(ValueError):
    """A raw input that cannot be converted, e.g. ``log.csv line 7, field 'time_ms': 'abc' is
    not an integer``."""

    def __init__(self, path, message, line=None, field=None):
        where = f"{path}" + (f" line {line}" if line is not None else "")
        where += f", field {field!r}" if field is not None else ""
        super().__init__(f"{where}: {message}")
        self.path, self.line, self.field = path, line, field
