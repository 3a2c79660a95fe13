"""Each user's earlier items, to leave out of the ranking (``exclude_history: True``).

Leave-one-out by time puts each user's second-to-last interaction in valid and the last in test,
so the items a user had seen before a valid target are all but the last two of the user's
time-sorted items, and before a test target all but the last one: the whole history, not only
the ``MAX_ITEM_LIST_LENGTH`` items a model reads.
"""

import numpy as np
import torch

from recbole_mamba.errors import ConfigError

LEFT_OUT = {"valid": 2, "test": 1}  # interactions at the end of each user's items that are not history


class UserHistory:
    """Time-sorted items per user id, as CSR: ``items[indptr[u]:indptr[u + 1]]``."""

    def __init__(self, indptr, items):
        self.indptr = torch.as_tensor(indptr, dtype=torch.long)
        self.items = torch.as_tensor(items)  # int64, or a store's memory-mapped int32

    @classmethod
    def of_dataset(cls, dataset):
        """From a RecBole dataset before its split and augmentation (ids remapped, filters
        applied; ``inter_feat`` still a DataFrame), or from the interaction store it reads (no copy)."""
        store = getattr(dataset, "store", None)
        if store is not None:
            return cls(store.offsets, torch.from_numpy(store.items))
        user, item, time = (np.asarray(dataset.inter_feat[field])
                            for field in (dataset.uid_field, dataset.iid_field, dataset.time_field))
        order = np.lexsort((time, user))  # by user, then time; stable as RecBole's sort
        counts = np.bincount(user, minlength=dataset.user_num)
        return cls(np.r_[0, np.cumsum(counts)], item[order])

    def seen_before(self, users, left_out):
        """(rows, items): for each of ``users`` (B,) its items but the last ``left_out``, as a
        pair of index tensors into a (B, n_items) score matrix."""
        start, end = self.indptr[users], self.indptr[users + 1] - left_out
        counts = (end - start).clamp(min=0)
        rows = torch.repeat_interleave(torch.arange(len(users)), counts)
        offsets = torch.arange(int(counts.sum())) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        return rows, self.items[start[rows] + offsets].long()


def history_to_exclude(config, dataset):
    """The :class:`UserHistory` of ``dataset`` (before its split) where ``exclude_history`` is set,
    else None; the protocol must be leave-one-out by time with full ranking."""
    if not config["exclude_history"]:
        return None
    modes = config["eval_args"]["mode"]
    modes = set(modes.values()) if isinstance(modes, dict) else {modes}
    if config["eval_args"]["split"] != {"LS": "valid_and_test"} or modes != {"full"}:
        raise ConfigError(
            "exclude_history needs leave-one-out by time with full ranking "
            "(eval_args split {'LS': 'valid_and_test'}, mode full)"
        )
    return UserHistory.of_dataset(dataset)


def attach_history(history, valid_data, test_data):
    """Give the valid and test dataloaders the items each user saw before its target
    (``dataloader.history`` = (:class:`UserHistory`, interactions left out at the end)); the
    trainer masks them in full ranking."""
    if history is not None:
        valid_data.history = (history, LEFT_OUT["valid"])
        test_data.history = (history, LEFT_OUT["test"])
