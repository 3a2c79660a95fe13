"""Loading atomic files at the study's size: the same dataset as RecBole's loader, sooner.

Measured on a converter-written file of 2.0 M interactions (``benchmarks/bench_load.py`` gives
the numbers per 10 M), two of RecBole's steps are most of a load and neither depends on the data:

- RecBole reads every atomic file with pandas' Python parser (``engine="python"``), which accepts
  a separator of several characters; for a one-character separator (the converters' tab) pandas'
  C parser reads the same file into the same frame.
- RecBole counts every user's and item's interactions to filter by
  ``user_inter_num_interval`` / ``item_inter_num_interval`` even where the intervals admit every
  count (the converters' datasets: ``[0,inf)``, the cut being made at conversion); such a filter
  drops nothing and is skipped.

:class:`AtomicFileLoading` does both for any dataset class it is mixed into; tests check that the
datasets equal RecBole's own, field by field.
"""

import math
import warnings

import pandas as pd
from recbole.data.dataset import dataset as recbole_dataset_module

from recbole_mamba.atomics.check import AtomicFileError, check_file, fields_match, header_fields, id_fields


class _RecbolePandas:
    """pandas as RecBole's loader sees it: ``read_csv`` with the C parser where the separator is
    one character, and the empty values of sequence fields read as "" (RecBole fills them so
    itself, with a chained in-place ``fillna`` that pandas 3 applies to a copy only)."""

    def __init__(self, c_parser):
        self.c_parser = c_parser

    def __getattr__(self, name):
        return getattr(pd, name)

    def read_csv(self, *args, **kwargs):
        frame = pd.read_csv(*args, **{**kwargs, "engine": "c"} if self.c_parser else kwargs)
        sequences = [column for column in frame.columns if column.rpartition(":")[2].endswith("seq")]
        return frame.fillna(dict.fromkeys(sequences, "")) if sequences else frame


def admits_every_count(intervals):
    """Whether RecBole's parsed intervals (None, or [(left bracket, a, b, right bracket)]) keep
    an id with any number >= 0 of interactions."""
    if intervals is None:
        return True
    return any((a < 0 or (a == 0 and left == "[")) and b == math.inf for left, a, b, _ in intervals)


class AtomicFileLoading:
    """Mixin for a RecBole ``Dataset`` class: C parser for one-character separators; no counting
    for interaction-number filters that keep everything; and a file RecBole cannot load, or loads
    with values missing, is checked line by line (:mod:`recbole_mamba.atomics.check`) so that the
    error names its lines, fields and values."""

    def _load_feat(self, filepath, source):
        separator = self.config["field_separator"]
        fields = header_fields(filepath, separator)
        try:
            frame = self._read_feat(filepath, source)
        except (ValueError, pd.errors.ParserError) as error:
            self._file_problems(filepath, source).raise_any()
            raise AtomicFileError(f"{filepath}: RecBole cannot load it: {str(error).splitlines()[0]}") from None
        if frame is not None and (frame.isna().to_numpy().any()  # empty values, or fields missing
                                  or not fields_match(filepath, separator, len(fields))):  # or too many
            self._file_problems(filepath, source).raise_any()
        return frame

    def _read_feat(self, filepath, source):
        recbole_pandas = recbole_dataset_module.pd
        recbole_dataset_module.pd = _RecbolePandas(c_parser=len(self.config["field_separator"]) == 1)
        try:
            with warnings.catch_warnings():  # RecBole's fillna of sequence fields: done by the reader already
                warnings.simplefilter("ignore", pd.errors.ChainedAssignmentError)
                return super()._load_feat(filepath, source)
        finally:
            recbole_dataset_module.pd = recbole_pandas

    def _file_problems(self, filepath, source):
        """:class:`~recbole_mamba.atomics.check.Problems` of the columns RecBole loads of the file."""
        load_col, _ = self._get_load_and_unload_col(source)
        required = id_fields(getattr(source, "value", source), self.uid_field, self.iid_field, self.time_field)
        return check_file(filepath, self.config["field_separator"], load_col, required,
                          self.config["seq_separator"] or " ")

    def _filter_by_inter_num(self):
        if all(admits_every_count(self._parse_intervals_str(self.config[key]))
               for key in ("user_inter_num_interval", "item_inter_num_interval")):
            return
        super()._filter_by_inter_num()
