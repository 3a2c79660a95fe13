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

import pandas as pd
from recbole.data.dataset import dataset as recbole_dataset_module


class _CParserPandas:
    """pandas, except that ``read_csv`` uses the C parser."""

    def __getattr__(self, name):
        return getattr(pd, name)

    @staticmethod
    def read_csv(*args, **kwargs):
        return pd.read_csv(*args, **{**kwargs, "engine": "c"})


def admits_every_count(intervals):
    """Whether RecBole's parsed intervals (None, or [(left bracket, a, b, right bracket)]) keep
    an id with any number >= 0 of interactions."""
    if intervals is None:
        return True
    return any((a < 0 or (a == 0 and left == "[")) and b == math.inf for left, a, b, _ in intervals)


class AtomicFileLoading:
    """Mixin for a RecBole ``Dataset`` class: C parser for one-character separators; no counting
    for interaction-number filters that keep everything."""

    def _load_feat(self, filepath, source):
        if len(self.config["field_separator"]) != 1:
            return super()._load_feat(filepath, source)
        recbole_pandas = recbole_dataset_module.pd
        recbole_dataset_module.pd = _CParserPandas()
        try:
            return super()._load_feat(filepath, source)
        finally:
            recbole_dataset_module.pd = recbole_pandas

    def _filter_by_inter_num(self):
        if all(admits_every_count(self._parse_intervals_str(self.config[key]))
               for key in ("user_inter_num_interval", "item_inter_num_interval")):
            return
        super()._filter_by_inter_num()
