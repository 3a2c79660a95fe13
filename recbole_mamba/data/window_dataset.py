"""A sequential dataset with at most three rows per user, for all-position training.

RecBole's ``SequentialDataset`` turns a user with n interactions into n-1 dense rows of
``MAX_ITEM_LIST_LENGTH`` (prefix augmentation): O(n * L) memory. :class:`WindowDataset` keeps,
per user with interactions s_0..s_{n-1} (by time), only the rows RecBole's leave-one-out split
would put in valid and test, and one training row:

- test:  history s_{n-1-L}..s_{n-2}, target s_{n-1}
- valid: history s_{n-2-L}..s_{n-3}, target s_{n-2}
- train: history s_{n-3-L}..s_{n-4}, target s_{n-3}: with the target appended, the user's last
  L+1 training interactions, so a loss at every position trains on all of them at once.

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

WINDOW_START = "window_start"  # row field: index of the history's first interaction


class WindowDataset(SequentialDataset):
    """``SequentialDataset`` whose augmentation emits the three rows above per user."""

    ROWS_PER_USER = 3

    def data_augmentation(self):
        self._aug_presets()
        self._check_field("uid_field", "time_field")
        max_len = self.config["MAX_ITEM_LIST_LENGTH"]
        self.sort(by=[self.uid_field, self.time_field], ascending=True)
        uid = self.inter_feat[self.uid_field].numpy()
        new = np.r_[True, uid[1:] != uid[:-1]] if len(uid) else np.zeros(0, dtype=bool)
        starts = np.flatnonzero(new)
        ends = np.append(starts[1:], len(uid))
        # targets: the last min(n - 1, 3) interactions of each user, oldest first
        n_rows = np.minimum(ends - starts - 1, self.ROWS_PER_USER)
        user_of_row = np.repeat(np.arange(len(starts)), n_rows)
        back = np.concatenate([np.arange(k, 0, -1) for k in n_rows]) if len(n_rows) else np.zeros(0, int)
        target = ends[user_of_row] - back  # index of each row's target interaction
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

    def __getitem__(self, index, join=True):
        rows = self.inter_feat[index]
        max_len = self.config["MAX_ITEM_LIST_LENGTH"]
        positions = torch.arange(max_len)
        valid = positions < rows[self.item_list_length_field].unsqueeze(1)
        index = torch.where(valid, rows[WINDOW_START].unsqueeze(1) + positions, 0)
        rows.update(Interaction({
            field: torch.where(valid, values[index], torch.zeros((), dtype=values.dtype))
            for field, values in self.history_sources.items()
        }))
        return self.join(rows) if join else rows
