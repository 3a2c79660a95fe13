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
(``LS: valid_and_test``) then yields the same valid and test rows as prefix mode: memory is
O(users * L).
"""

import numpy as np
import torch

from recbole.data.dataset import SequentialDataset
from recbole.data.interaction import Interaction


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
        length = target - first

        positions = np.arange(max_len)
        index = first[:, None] + positions[None, :]
        valid = positions[None, :] < length[:, None]
        index = np.where(valid, index, 0)
        index_t, valid_t = torch.from_numpy(index), torch.from_numpy(valid)

        new_data = self.inter_feat[torch.from_numpy(target)]
        new_dict = {self.item_list_length_field: torch.from_numpy(length.astype(np.int64))}
        for field in self.inter_feat:
            if field == self.uid_field:
                continue
            list_field = getattr(self, f"{field}_list_field")
            values = self.inter_feat[field]
            if values.dim() != 1:
                raise NotImplementedError(f"all-position rows support scalar fields only, not {field!r}")
            rows = values[index_t]
            new_dict[list_field] = torch.where(valid_t, rows, torch.zeros((), dtype=rows.dtype))
        new_data.update(Interaction(new_dict))
        self.inter_feat = new_data
