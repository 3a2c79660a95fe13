"""A sequential dataset of windows, for all-position training.

RecBole's ``SequentialDataset`` turns a user with n interactions into n-1 dense rows of
``MAX_ITEM_LIST_LENGTH`` (prefix augmentation): O(n * L) memory, and each interaction is encoded
up to L times per epoch. :class:`WindowDataset` keeps, per user with interactions s_0..s_{n-1}
(by time), the rows RecBole's leave-one-out split puts in valid and test, and training windows
that a loss at every position covers once each:

- test:  history s_{n-1-L}..s_{n-2}, target s_{n-1}
- valid: history s_{n-2-L}..s_{n-3}, target s_{n-2}
- train (``train_windows: last``): history s_{n-3-L}..s_{n-4}, target s_{n-3}: with the target
  appended, the user's last L+1 training interactions;
- train (``train_windows: all``, the default): that window, and the windows before it, back to
  the user's first interaction: targets s_{n-3}, s_{n-3-L}, s_{n-3-2L}, ..., each window with the
  L interactions before its target as history, so that every training interaction but the
  user's first is predicted exactly once per epoch, however long the history. A user with
  n - 3 <= L interactions of training history has one window either way.

Users with 2 or 3 interactions get 1 or 2 rows, as in RecBole. RecBole's own split
(``LS: valid_and_test``) then yields the same valid and test rows as prefix mode.

Rows hold only their target interaction, where their history starts and its length; the history
lists (``item_id_list`` ...) are built from the time-sorted interactions when rows are fetched
(``dataset[index]``, which all of RecBole's dataloaders use), so memory is O(interactions) plus
one padded batch.
"""

import numpy as np
import torch

from recbole.data.dataset import SequentialDataset
from recbole.data.interaction import Interaction

from recbole_mamba.train_modes import TRAIN_WINDOWS
from recbole_mamba.data.atomic_loading import AtomicFileLoading
from recbole_mamba.data.pandas3 import Pandas3Dataset

WINDOW_START = "window_start"  # row field: index of the history's first interaction


class WindowDataset(AtomicFileLoading, Pandas3Dataset, SequentialDataset):
    """``SequentialDataset`` whose augmentation emits the rows above per user (its atomic files
    loaded by :class:`~recbole_mamba.data.atomic_loading.AtomicFileLoading`, its steps meaning on
    pandas 3 what they mean on pandas 2: :class:`~recbole_mamba.data.pandas3.Pandas3Dataset`)."""

    EVAL_ROWS = 2  # valid and test

    def data_augmentation(self):
        self._aug_presets()
        self._check_field("uid_field", "time_field")
        max_len = self.config["MAX_ITEM_LIST_LENGTH"]
        self.sort(by=[self.uid_field, self.time_field], ascending=True)
        uid = self.inter_feat[self.uid_field].numpy()
        new = np.r_[True, uid[1:] != uid[:-1]] if len(uid) else np.zeros(0, dtype=bool)
        starts = np.flatnonzero(new)
        ends = np.append(starts[1:], len(uid))
        target = self._targets(starts, ends, max_len, self.config["train_windows"] or "all")
        user_of_row = np.searchsorted(starts, target, side="right") - 1
        first = np.maximum(starts[user_of_row], target - max_len)  # history [first, target)

        self.history_sources = {}  # list field -> the time-sorted values it is cut from
        for field in self.inter_feat:
            if field == self.uid_field:
                continue
            values = self.inter_feat[field]
            if values.dim() != 1:
                raise NotImplementedError(f"all-position rows support scalar fields only, not {field!r}")
            self.history_sources[getattr(self, f"{field}_list_field")] = values
        rows = self.inter_feat[torch.from_numpy(target)]
        rows.update(Interaction({
            self.item_list_length_field: torch.from_numpy((target - first).astype(np.int64)),
            WINDOW_START: torch.from_numpy(first.astype(np.int64)),
        }))
        self.inter_feat = rows

    @classmethod
    def _targets(cls, starts, ends, max_len, train_windows):
        """Index of each row's target interaction, per user (``starts``/``ends``: the users'
        interaction ranges) in time order: training windows, then valid and test."""
        n = ends - starts
        eval_rows = np.minimum(np.maximum(n - 1, 0), cls.EVAL_ROWS)
        history = np.maximum(n - 1 - cls.EVAL_ROWS, 0)  # training targets s_1..s_{n-3}
        if train_windows == "all":
            train_rows = -(-history // max_len)  # ceil: windows of max_len targets
        elif train_windows == "last":
            train_rows = np.minimum(history, 1)
        else:
            raise ValueError(f"train_windows must be one of {', '.join(TRAIN_WINDOWS)}, got {train_windows!r}")
        rows = train_rows + eval_rows
        first_row = np.cumsum(rows) - rows
        j = np.arange(rows.sum()) - np.repeat(first_row, rows)  # row number within its user
        train_rows, eval_rows = np.repeat(train_rows, rows), np.repeat(eval_rows, rows)
        last_train = np.repeat(ends, rows) - 1 - cls.EVAL_ROWS
        return np.where(
            j < train_rows,
            last_train - max_len * (train_rows - 1 - j),
            np.repeat(ends, rows) - (train_rows + eval_rows - j),
        )

    def __getitem__(self, index, join=True):
        rows = self.inter_feat[index]
        max_len = self.config["MAX_ITEM_LIST_LENGTH"]
        positions = torch.arange(max_len)
        valid = positions < rows[self.item_list_length_field].unsqueeze(1)
        index = torch.where(valid, rows[WINDOW_START].unsqueeze(1) + positions, 0)
        rows.update(Interaction({  # ids as int64 whatever the source holds (a store's: int32)
            field: torch.where(valid, values[index], torch.zeros((), dtype=values.dtype))
            .to(values.dtype if values.is_floating_point() else torch.int64)
            for field, values in self.history_sources.items()
        }))
        return self.join(rows) if join else rows
