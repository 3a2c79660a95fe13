"""Generated data with a planted long-range rule: ``python -m recbole_mamba.atomics synthetic``.

Each user u gets a lag k_u, drawn uniformly from ``lags``, and a sequence of ``length`` items
(ids 1..``items``), one per time step:

- the first k_u items are uniform;
- after that, item t is ``perm_k[item t - k_u]`` with probability 1 - ``noise`` (``perm_k``: a
  fixed random permutation of the items, one per lag), else uniform.

So the next item is revealed by the item exactly k_u steps back, and only a model that sees at
least k_u + 1 items of context (the item k_u back and enough of the pattern to tell the lag) can
predict it; with less context it is at chance (1 / ``items`` per guess). The ceiling at context
length c (:func:`oracle_hit_rate`): the users with k_u < c are predicted with probability
1 - noise + noise / items, the others at chance.
"""

import numpy as np

from recbole_mamba.atomics.errors import OptionError
from recbole_mamba.atomics.writer import format_table, sequence_stats, write_dataset

DEFAULT_LAGS = (4, 16, 64)


def planted_sequences(users, length, items, lags=DEFAULT_LAGS, noise=0.1, seed=0):
    """(sequences (users, length) int64 in 1..items, lag of each user (users,))."""
    if not lags or min(lags) < 1:
        raise OptionError(f"lags must be positive integers, got {lags!r}")
    if items < 2 or users < 1 or length < 2:
        raise OptionError("synthetic data needs users >= 1, length >= 2 and items >= 2")
    if not 0.0 <= noise <= 1.0:
        raise OptionError(f"noise must be in [0, 1], got {noise}")
    rng = np.random.default_rng(seed)
    perms = {k: rng.permutation(items) + 1 for k in sorted(set(lags))}
    lag = rng.choice(np.asarray(lags), size=users)
    seqs = rng.integers(1, items + 1, size=(users, length))
    keep = rng.random((users, length)) >= noise
    for k, perm in perms.items():
        rows = np.flatnonzero(lag == k)
        for t in range(k, length):
            planted = perm[seqs[rows, t - k] - 1]
            seqs[rows, t] = np.where(keep[rows, t], planted, seqs[rows, t])
    return seqs, lag


def oracle_hit_rate(lag, items, noise, context, k=1):
    """The best possible probability that the next item is among ``k`` guesses (HR@k) with
    ``context`` items of history, for users with lags ``lag`` (late positions, where t >= lag):
    the planted item first, then any k - 1 others, which a uniform draw hits with k / items."""
    lag = np.asarray(lag)
    sees = lag < context
    chance = min(k, items) / items
    return float(np.where(sees, 1.0 - noise + noise * chance, chance).mean())


def write_synthetic(output_dir, users=1000, length=200, items=500, lags=DEFAULT_LAGS, noise=0.1, seed=0,
                    name=None):
    """Write the dataset ``name`` (default ``synthetic-<lags>``) as atomic files; returns its
    stats (with the oracle's HR@1 at several context lengths)."""
    seqs, lag = planted_sequences(users, length, items, lags, noise, seed)
    name = name or "synthetic-" + "-".join(str(k) for k in sorted(set(lags)))
    user = np.repeat(np.arange(1, users + 1), length)
    time = np.tile(np.arange(length, dtype=np.float64), users)
    stats = {
        "source": "synthetic",
        "name": name,
        "options": {"users": users, "length": length, "items": items, "lags": list(lags), "noise": noise,
                    "seed": seed},
        **sequence_stats(user),
        "items": int(len(np.unique(seqs))),
        "oracle_hr@1_by_context": {
            str(c): round(oracle_hit_rate(lag, items, noise, c), 4)
            for c in sorted({1, *(k + 1 for k in lags), length})
        },
    }
    inter = [("user_id:token", user), ("item_id:token", seqs.reshape(-1)), ("timestamp:float", time)]
    folder = write_dataset(output_dir, name, inter, stats)
    print(format_table(name, stats))
    print("oracle HR@1 by context length: " + ", ".join(
        f"{c}: {v:.3f}" for c, v in stats["oracle_hr@1_by_context"].items()))
    return {**stats, "folder": folder}
