"""The reference study's Table 1 for a loaded dataset."""

import numpy as np

from recbole_mamba.atomics.writer import length_stats, sequence_stats


def dataset_statistics(dataset):
    """users, items, interactions and average / median / max sequence length of a RecBole dataset
    (after its filters, before the split: ``inter_feat`` still whole), or of the interaction store
    it reads."""
    store = getattr(dataset, "store", None)
    if store is not None:
        lengths = store.lengths()
        return {**length_stats(lengths[lengths > 0]), "items": store.meta["items_seen"]}
    user = np.asarray(dataset.inter_feat[dataset.uid_field])
    item = np.asarray(dataset.inter_feat[dataset.iid_field])
    return {**sequence_stats(user), "items": int(len(np.unique(item)))}
