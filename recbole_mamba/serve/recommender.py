"""A trained model as a recommender: :func:`load` a checkpoint alone (weights-only), then rank
items for a history of external item tokens, for users of the training data, or live
(:meth:`Recommender.session`).

No RecBole dataset or Config is built at serving time: the model is constructed from the
parameters its checkpoint stores, with the number of items taken from the item tokens saved
beside the weights.

Context rule: MambaRec without position embeddings and GRU4Rec are recurrent and have no length
limit, so they read a user's whole history (and a session updates in O(1) per event); every other
model reads the last ``MAX_ITEM_LIST_LENGTH`` events, as in training and evaluation.
"""

import os
import warnings

import numpy as np
import torch
from recbole.data.interaction import Interaction

from recbole_mamba.config import EMBEDDED_DATASET
from recbole_mamba.errors import ServeError
from recbole_mamba.registry import get_model
from recbole_mamba.serve.session import Session
from recbole_mamba.trainer.all_positions import build_model
from recbole_mamba.trainer.checkpoint import CheckpointError, checkpoint_parameters, load_checkpoint, tokens_of


class _Parameters(dict):
    """A checkpoint's parameters, read as models read RecBole's Config: ``config[key]``, None where
    a key is absent."""

    def __missing__(self, key):
        return None


class _ItemCount:
    """What a sequential model's ``__init__`` reads of a RecBole dataset: the number of items."""

    def __init__(self, n_items):
        self.n_items = n_items

    def num(self, field):
        return self.n_items


def load(checkpoint, device="cpu", model=None):
    """The :class:`Recommender` of a checkpoint written by training (weights-only, never
    unpickled), on ``device``; a model trained on a GPU, with any scan backend, runs on a CPU.
    ``model``: the model class name expected (a checkpoint of another model is an error)."""
    path = str(checkpoint)
    state = load_checkpoint(path)
    parameters = checkpoint_parameters(path, state)
    if state.get("item_tokens") is None:
        raise CheckpointError(f"{path}: it holds no item tokens to serve from (written by an older "
                              "recbole-mamba)")
    tokens = tokens_of(state["item_tokens"])
    name = state.get("model")
    if model is not None and name != model:
        raise CheckpointError(f"{path}: a checkpoint of {name}, not of {model}")
    model_class = get_model(name)
    config = _Parameters(parameters, device=torch.device(device), model=name, dataset=state.get("dataset"))
    if "mamba_backend" in config:
        config["mamba_backend"] = "auto"  # trained anywhere, served here
    config["train_negatives_distribution"] = "uniform"  # serving draws no training negatives
    try:
        recommender = build_model(model_class, config, _ItemCount(len(tokens)))
    except AttributeError as e:
        raise CheckpointError(f"{path}: {name} reads its training dataset when built ({e}), so it cannot be "
                              "served from a checkpoint alone") from None
    try:
        recommender.load_state_dict(state["state_dict"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: its weights do not fit a {name} built from its parameters: "
                              f"{str(e).splitlines()[0]}") from None
    return Recommender(recommender.to(device).eval(), config, tokens, path)


def whole_history(model):
    """Whether ``model`` reads a user's whole history (recurrent, no position embedding)."""
    from recbole_mamba.model import MambaRec
    from recbole_mamba.registry import recbole_sequential_models

    if isinstance(model, MambaRec):
        return model.position_embedding is None
    return type(model) is recbole_sequential_models()["GRU4Rec"]


class Recommender:
    """Top-k items for histories of external item tokens (see the module docstring for the context
    rule). ``item_tokens[i]`` is the token of item id i (id 0 is padding): a
    :class:`~recbole_mamba.atomics.tokens.Utf8Tokens`, searched without a dict of its tokens."""

    def __init__(self, model, config, item_tokens, source):
        self.model = model
        self.config = config
        self.source = source
        self.item_tokens = item_tokens
        self.name = type(model).__name__
        self.context_limit = None if whole_history(model) else config["MAX_ITEM_LIST_LENGTH"]
        self.device = next(model.parameters()).device

    def __repr__(self):
        limit = "whole history" if self.context_limit is None else f"last {self.context_limit} events"
        return f"Recommender({self.name}, {len(self.item_tokens) - 1} items, {limit}, from {self.source})"

    def ids_of(self, history, unknown="error"):
        """Item ids of external tokens (str or int); ``unknown``: 'error' or 'skip' (with a warning)."""
        if unknown not in ("error", "skip"):
            raise ServeError(f"unknown must be 'error' or 'skip', got {unknown!r}")
        history = list(history)
        for token in history:
            if isinstance(token, bool) or not isinstance(token, (str, int)):
                raise ServeError(f"item tokens are strings or ints, got {token!r} ({type(token).__name__})")
        ids, skipped = [], []
        for token, item in zip(history, self.known_ids(history).tolist(), strict=True):
            if item < 1:
                if unknown == "error":
                    raise ServeError(f"unknown item {token!r}: not among the model's {len(self.item_tokens) - 1} "
                                     "items (unknown='skip' leaves such items out)")
                skipped.append(token)
                continue
            ids.append(item)
        if skipped:
            warnings.warn(f"{len(skipped)} unknown item(s) left out of the history, e.g. {skipped[0]!r}")
        return ids

    def known_ids(self, tokens):
        """(len(tokens),) int64: the item id of each token, 0 for one the model does not know
        (the padding token included)."""
        return np.maximum(self.item_tokens.ids(tokens), 0)

    def context(self, ids):
        """The part of a history of ids that the model reads."""
        return list(ids) if self.context_limit is None else list(ids)[-self.context_limit:]

    @torch.no_grad()
    def scores(self, histories):
        """(len(histories), n_items) scores of every item after each history of item ids (the
        padding item scores -inf)."""
        contexts = [self.context(ids) for ids in histories]
        if any(not ids for ids in contexts):
            raise ServeError("empty history: a sequential model needs at least one event")
        width = max(len(ids) for ids in contexts)
        seq = torch.zeros(len(contexts), width, dtype=torch.long)
        for row, ids in enumerate(contexts):
            seq[row, : len(ids)] = torch.tensor(ids)
        lengths = torch.tensor([len(ids) for ids in contexts])
        batch = Interaction({self.model.ITEM_SEQ: seq, self.model.ITEM_SEQ_LEN: lengths}).to(self.device)
        scores = self.model.full_sort_predict(batch).float()
        scores[:, 0] = -torch.inf
        return scores

    def top(self, scores, k, exclude=()):
        """[(token, score)] of the k best items of one row of scores, leaving out ids ``exclude``."""
        if exclude:
            scores = scores.clone()
            scores[torch.tensor(sorted(set(exclude)), device=scores.device)] = -torch.inf
        values, ids = scores.topk(min(k, len(self.item_tokens) - 1))
        return [(self.item_tokens[i], float(v)) for i, v in zip(ids.tolist(), values.tolist(), strict=True)]

    def best(self, histories, k=10, exclude_seen=False, batch_size=256):
        """[(item token, score)] of the k best next items after each history of item ids, scoring
        ``batch_size`` histories at a time (a generator, in the order given)."""
        for start in range(0, len(histories), batch_size):
            batch = histories[start:start + batch_size]
            for ids, row in zip(batch, self.scores(batch), strict=True):
                yield self.top(row, k, ids if exclude_seen else ())

    def recommend(self, history, k=10, exclude_seen=False, unknown="error"):
        """[(item token, score)] of the k best next items after ``history`` (external tokens,
        oldest first)."""
        return next(self.best([self.ids_of(history, unknown)], k, exclude_seen))

    def recommend_users(self, user_tokens, k=10, exclude_seen=False):
        """{user token: [(item token, score)]} for users of the training data, from their
        histories in the dataset's atomic ``.inter`` file (read now, not at load)."""
        wanted = [str(u) for u in user_tokens]
        histories = self.user_histories(wanted)
        return dict(zip(wanted, self.best([histories[u] for u in wanted], k, exclude_seen), strict=True))

    def inter_file(self):
        """The atomic ``.inter`` file of the dataset the model was trained on."""
        dataset = self.config["dataset"]
        if dataset == EMBEDDED_DATASET:
            import recbole

            return os.path.join(os.path.dirname(recbole.__file__), "dataset_example", dataset, f"{dataset}.inter")
        return os.path.join(self.config["data_path"], dataset, f"{dataset}.inter")

    def user_histories(self, users=None, chunk_rows=1 << 20):
        """{user token: [item ids by time]} for ``users`` (tokens; None: every user), sorted by
        user token. Items the model does not know (dropped by RecBole's filters) are left out. The
        file is read in chunks that keep the rows of the wanted users only; an unknown user is an
        error."""
        import pandas as pd

        path = self.inter_file()
        sep = self.config["field_separator"] or "\t"
        fields = {name.split(":")[0]: name for name in pd.read_csv(path, sep=sep, nrows=0).columns}
        keys = [self.config[key] for key in ("USER_ID_FIELD", "ITEM_ID_FIELD", "TIME_FIELD")]
        columns = [fields[key] for key in keys]
        wanted = None if users is None else {str(u) for u in users}
        parts = []
        for chunk in pd.read_csv(path, sep=sep, usecols=columns, dtype={columns[0]: str, columns[1]: str},
                                 chunksize=chunk_rows):
            if wanted is not None:
                chunk = chunk[chunk[columns[0]].isin(wanted)]
            parts.append(chunk.assign(_id=self.known_ids(chunk[columns[1]])))
        frame = pd.concat(parts).sort_values([columns[0], columns[2]], kind="stable")
        histories = {user: rows["_id"][rows["_id"] > 0].tolist()
                     for user, rows in frame.groupby(columns[0], sort=True)}
        missing = sorted(wanted - set(histories)) if wanted is not None else []
        if missing:
            raise ServeError(f"unknown user {missing[0]!r}: no interactions in {path}"
                             + (f" ({len(missing)} users unknown)" if len(missing) > 1 else ""))
        return histories

    def write_recommendations(self, out, users=None, k=10, exclude_seen=False, batch_size=256, progress=True):
        """Write ``user_id,rank,item_id,score`` rows (CSV) of the k best items of every user (or of
        ``users``) to ``out``, scoring ``batch_size`` users at a time; the file appears whole or
        not at all. Returns the number of users written (users none of whose items the model
        knows have no rows)."""
        import csv

        from tqdm import tqdm

        from recbole_mamba.files import atomic_open

        known = [(user, ids) for user, ids in self.user_histories(users).items() if ids]
        with atomic_open(out, "w", newline="") as f, tqdm(total=len(known), unit="user", disable=not progress) as bar:
            writer = csv.writer(f)
            writer.writerow(["user_id", "rank", "item_id", "score"])
            best = self.best([ids for _, ids in known], k, exclude_seen, batch_size)
            for (user, _), items in zip(known, best, strict=True):
                writer.writerows((user, rank, item, f"{score:.6g}") for rank, (item, score) in enumerate(items, 1))
                bar.update()
        return len(known)

    def session(self, history=(), unknown="error"):
        """A live :class:`~recbole_mamba.serve.session.Session` after ``history`` (external tokens)."""
        session = Session(self)
        for item in self.ids_of(history, unknown):
            session.observe_id(item)
        return session

    def session_from_bytes(self, data):
        """A session saved with :meth:`Session.to_bytes`."""
        return Session.from_bytes(self, data)
