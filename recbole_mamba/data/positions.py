"""Whether evaluation reads positions that training never reaches.

Models with a learned absolute position embedding (RecBole's SASRec and BERT4Rec, RecMamba,
MoEMaTrRec, MambaRec with ``use_position_embedding``) add the embedding of position 0..h-1 to a
history of h items, left-aligned, and score the next item from position h-1. A training row with
h history items trains positions 0..h-1; a user's valid and test rows read the user's n-2 and n-1
earlier items (at most ``MAX_ITEM_LIST_LENGTH``). So when no user has more than
``MAX_ITEM_LIST_LENGTH`` + 2 interactions (e.g. a dataset cut to each user's last L events and
read with ``MAX_ITEM_LIST_LENGTH`` L), the longest valid and test rows are scored from position
embeddings that training never updated: their random initialisation, whatever the model learned.
Models without one (GRU4Rec, MambaRec by default) read order from the recurrence, not from an
index, and are not affected.
"""

from torch import nn


def has_position_embedding(model):
    """Whether ``model`` adds a learned embedding of the absolute position (``position_embedding``,
    as RecBole's models name it)."""
    return isinstance(getattr(model, "position_embedding", None), nn.Embedding)


def history_lengths(dataset):
    """(rows,) int64: the number of history items of each row of a split RecBole dataset."""
    return dataset.inter_feat[dataset.item_list_length_field]


def untrained_positions(train_dataset, eval_datasets):
    """``None`` when every valid and test row's last position is one that some training row
    reaches; else a dict: ``longest_train`` (the longest training history), ``longest_eval``,
    and per phase of ``eval_datasets`` ({phase: dataset}) the number of ``rows`` beyond it and
    their ``total``."""
    longest_train = int(history_lengths(train_dataset).max()) if len(train_dataset.inter_feat) else 0
    found = {}
    for phase, dataset in eval_datasets.items():
        lengths = history_lengths(dataset)
        beyond = int((lengths > longest_train).sum())
        if beyond:
            found[phase] = {"rows": beyond, "total": int(lengths.numel()), "longest": int(lengths.max())}
    if not found:
        return None
    return {"longest_train": longest_train, "longest_eval": max(v["longest"] for v in found.values()), **found}


def untrained_positions_message(model_name, max_len, found):
    """The warning for :func:`untrained_positions`'s ``found``."""
    rows = ", ".join(f"{found[phase]['rows']} of {found[phase]['total']} {phase} rows"
                     for phase in ("valid", "test") if phase in found)
    first, last = found["longest_train"], found["longest_eval"] - 1
    span = f"position {first}" if first == last else f"positions {first} to {last}"
    return (f"{model_name} adds a learned position embedding, but no training history is longer than "
            f"{found['longest_train']} items: {rows} are scored at {span}, which training never "
            f"updates. Use MAX_ITEM_LIST_LENGTH <= {found['longest_train']} (now {max_len}), or keep at "
            f"least MAX_ITEM_LIST_LENGTH + 3 interactions per user (a converter's --max-len).")


def warn_untrained_positions(logger, config, model, train_dataset, valid_dataset, test_dataset):
    """Log :func:`untrained_positions_message` when ``model`` has a position embedding and the
    evaluation reads positions that training does not reach; returns the finding (or None)."""
    if not has_position_embedding(model):
        return None
    found = untrained_positions(train_dataset, {"valid": valid_dataset, "test": test_dataset})
    if found is not None:
        logger.warning(untrained_positions_message(config["model"], config["MAX_ITEM_LIST_LENGTH"], found))
    return found


__all__ = ["has_position_embedding", "untrained_positions", "warn_untrained_positions"]
