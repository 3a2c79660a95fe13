"""RecBole 1.2.1's dataset steps whose meaning pandas 3 changed, done as RecBole does them on
pandas 2 (the same frames on both; tests compare them with RecBole's own on pandas 2's terms).

- ``Series.agg(len)`` is the length of the whole Series on pandas 3, not a length per row. RecBole
  splits a ``token_seq`` field's new ids with it (``_remap``: on pandas 3 every row of the field
  would get all ids, and the assignment fails), and so does its normalisation and discretisation of
  ``float_seq`` fields, which :class:`Pandas3Dataset` refuses on pandas 3 in one line.
- A chained ``feat[field].fillna(..., inplace=True)`` fills a copy under copy-on-write and leaves
  the frame as it was: RecBole's ``_fill_nan`` would leave the NaN of ``float`` fields unfilled
  (silently, not with their mean). The empty values of ``token_seq``/``float_seq`` fields, which
  RecBole fills with "" the same way while loading, are filled by
  :mod:`~recbole_mamba.data.atomic_loading`'s reader.
"""

import numpy as np
import pandas as pd
from recbole.utils import FeatureType

from recbole_mamba.errors import ConfigError
from recbole_mamba.recbole_stack import version_tuple

PANDAS_3 = version_tuple(pd.__version__) >= (3,)


class Pandas3Dataset:
    """Mixin for a RecBole ``Dataset`` class: ``_fill_nan`` and ``_remap`` that mean on pandas 3
    what RecBole's mean on pandas 2."""

    def _fill_nan(self):
        for feat_name in self.feat_name_list:
            feat = getattr(self, feat_name)
            for field in feat:
                ftype = self.field2type[field]
                if ftype == FeatureType.TOKEN:
                    feat[field] = feat[field].fillna(value=0)
                elif ftype == FeatureType.FLOAT:
                    feat[field] = feat[field].fillna(value=feat[field].mean())
                else:  # a sequence field: its missing rows become empty arrays
                    dtype = np.int64 if ftype == FeatureType.TOKEN_SEQ else np.float64
                    feat[field] = feat[field].apply(lambda x: np.array([], dtype=dtype) if isinstance(x, float) else x)

    def _remap(self, remap_list):
        if len(remap_list) == 0:
            return
        tokens, split_point = self._concat_remaped_tokens(remap_list)
        new_ids_list, mp = pd.factorize(tokens)
        new_ids_list = np.split(new_ids_list + 1, split_point)
        mp = np.array(["[PAD]"] + list(mp))
        token_id = {t: i for i, t in enumerate(mp)}
        for (feat, field, ftype), new_ids in zip(remap_list, new_ids_list, strict=True):
            if field not in self.field2id_token:
                self.field2id_token[field] = mp
                self.field2token_id[field] = token_id
            if ftype == FeatureType.TOKEN:
                feat[field] = new_ids
            elif ftype == FeatureType.TOKEN_SEQ:
                feat[field] = np.split(new_ids, np.cumsum(feat[field].map(len))[:-1])

    def _normalize(self):
        normalized = self.config["normalize_field"] or (self.float_like_fields if self.config["normalize_all"] else [])
        self._refuse_float_seq("normalize_field / normalize_all", normalized)
        super()._normalize()

    def _discretization(self):
        self._refuse_float_seq("numerical_features", self.config["numerical_features"] or [])
        super()._discretization()

    def _refuse_float_seq(self, keys, fields):
        """On pandas 3, refuse to let RecBole normalise or discretise a ``float_seq`` field."""
        float_seq = sorted(field for field in fields if self.field2type.get(field) == FeatureType.FLOAT_SEQ)
        if PANDAS_3 and float_seq:
            raise ConfigError(
                f"{keys}: RecBole 1.2.1 cannot normalise or discretise the float_seq fields "
                f"{', '.join(float_seq)} on pandas {pd.__version__}; leave them out of {keys}")
