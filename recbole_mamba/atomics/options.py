"""The options both converters share: where to write, and how to cut each user's history.

One :class:`ConvertOptions` holds them; the command line's flags are made from its fields (their
help is the field's ``help`` metadata), so each option is spelled out once.
"""

from dataclasses import asdict, dataclass, field, fields
from typing import Optional

from recbole_mamba.atomics.errors import OptionError


def _option(default, help, **argparse_kwargs):
    return field(default=default, metadata={"help": help, **argparse_kwargs})


@dataclass(frozen=True)
class ConvertOptions:
    """Output folder and name, the per-user cut, and what to do with bad lines."""

    output_dir: str = _option("dataset_atomics", "default: dataset_atomics/")
    name: Optional[str] = _option(None, "dataset name (default encodes the cut, e.g. kuairand-2k)")
    max_len: Optional[int] = _option(None, "keep each user's last N interactions by time", type=int)
    min_user_len: int = _option(0, "drop users with fewer events", type=int)
    min_item_count: int = _option(
        0, "drop items with fewer events (with --min-user-len: k-core to a fixed point)", type=int)
    users: Optional[int] = _option(None, "keep K users (deterministic by --seed)", type=int)
    user_fraction: Optional[float] = _option(None, "keep this fraction of users", type=float)
    seed: int = _option(0, "seed of the user sampling", type=int)
    drop_consecutive_duplicates: bool = _option(
        False, "drop an event whose item repeats the user's previous one", action="store_true")
    on_bad_lines: str = _option("error", "error: stop at the first bad line; skip: drop and count them",
                                choices=["error", "skip"])

    def __post_init__(self):
        for label, value in (("max_len", self.max_len), ("users", self.users)):
            if value is not None and value < 1:
                raise OptionError(f"--{label.replace('_', '-')} must be at least 1, got {value}")
        if self.min_user_len < 0 or self.min_item_count < 0:
            raise OptionError("--min-user-len and --min-item-count must not be negative")
        if self.users is not None and self.user_fraction is not None:
            raise OptionError("give --users or --user-fraction, not both")
        if self.user_fraction is not None and not 0 < self.user_fraction <= 1:
            raise OptionError(f"--user-fraction must be in (0, 1], got {self.user_fraction}")
        if self.on_bad_lines not in ("error", "skip"):
            raise OptionError(f"--on-bad-lines must be error or skip, got {self.on_bad_lines!r}")

    def cut(self):
        """The options that decide which events are kept (recorded in stats.json)."""
        return {k: v for k, v in asdict(self).items() if k not in ("output_dir", "name", "on_bad_lines")}

    @classmethod
    def add_arguments(cls, parser):
        """One ``--flag`` per field on an argparse parser."""
        for f in fields(cls):
            parser.add_argument(f"--{f.name.replace('_', '-')}", default=f.default, **f.metadata)

    @classmethod
    def values_of(cls, args):
        """{field: value} of parsed command-line ``args``, for the converters' ``**options``."""
        return {f.name: getattr(args, f.name) for f in fields(cls)}
