"""Generated long-range data has the documented property: the item k_u steps back reveals the next
item, so an oracle that sees more than k_u items beats one with a shorter context."""

import numpy as np
import pytest

from recbole_mamba.atomics.synthetic import oracle_hit_rate, planted_sequences

USERS, LENGTH, ITEMS, LAGS, NOISE = 900, 80, 30, (1, 4, 16), 0.1


def _lookup_hit_rate(seqs, lag, context):
    """HR@1 at the last position of the second half of the users, of a predictor that knows each
    user's lag and learned, from the first half, the item that most often follows item x at that
    lag; with a context of ``context`` items it can only use a lag < context, else guesses item 1."""
    half = len(seqs) // 2
    hits = []
    for k in sorted(set(lag.tolist())):
        train = seqs[:half][lag[:half] == k]
        table = np.zeros((ITEMS + 1, ITEMS + 1), dtype=np.int64)
        np.add.at(table, (train[:, :-k].ravel(), train[:, k:].ravel()), 1)
        successor = table.argmax(axis=1)
        test = seqs[half:][lag[half:] == k]
        guess = successor[test[:, -1 - k]] if k < context else np.ones(len(test), dtype=np.int64)
        hits.append(guess == test[:, -1])
    return float(np.concatenate(hits).mean())


def test_the_item_lag_steps_back_reveals_the_next_item():
    seqs, lag = planted_sequences(USERS, LENGTH, ITEMS, LAGS, NOISE, seed=5)
    assert seqs.shape == (USERS, LENGTH) and seqs.min() >= 1 and seqs.max() <= ITEMS
    rates = {c: _lookup_hit_rate(seqs, lag, c) for c in (2, 5, 17)}
    for context, rate in rates.items():  # measured on held-out users, as documented
        assert rate == pytest.approx(oracle_hit_rate(lag[USERS // 2:], ITEMS, NOISE, context), abs=0.05)
    assert rates[2] + 0.15 < rates[5] and rates[5] + 0.15 < rates[17]  # longer context, better ceiling
    assert oracle_hit_rate(lag, ITEMS, NOISE, 17, k=10) == pytest.approx(1 - NOISE + NOISE * 10 / ITEMS)
    assert oracle_hit_rate(lag, ITEMS, NOISE, 1, k=10) == pytest.approx(10 / ITEMS)
