"""RecBole's SASRec and the plugin's models learn a planted rule through the pipeline a user runs.

``quick_start.run`` with the shipped defaults (the model's yaml and overall.yaml: learning rate,
dropout, initialisation, loss, early stopping on validation NDCG@10 with its patience), on
generated data (:mod:`recbole_mamba.atomics.synthetic`) where each user's next item is a fixed
permutation of the item 4 or 8 steps back (40 items: chance HR@10 is 0.25). Only the data and
the budget (30 epochs of batches of 320 tokens, 8 windows) are chosen here. Each user has
``MAX_ITEM_LIST_LENGTH`` + 3 interactions, so that the longest training history is as long as the
valid and test histories: with ``MAX_ITEM_LIST_LENGTH`` interactions, SASRec, RecMamba and
MoEMaTrRec would score valid and test at position embeddings that no training row reaches
(:mod:`recbole_mamba.data.positions`), and SASRec, which attends by position, stays at chance.

Lags 4 to 64, each alone in a window of 80, are ``benchmarks/bench_planted_lags.py``'s (docs/comparisons.md,
"Stalls and planted rules"): SASRec learns all of them, MoEMaTrRec all to 32, MambaRec, RecMamba
and GRU4Rec 16 approximately and not 32 or 64, but MambaRec with ``d_conv: 64`` all of them. Here
lag 32 alone: MambaRec learns it with a convolution as wide as the window, not with the shipped
width 4.
"""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest

from recbole_mamba.atomics.synthetic import oracle_hit_rate, planted_sequences, write_synthetic
from recbole_mamba.quick_start import run

USERS, WINDOW, ITEMS, LAGS, NOISE = 400, 40, 40, (4, 8), 0.0
LENGTH = WINDOW + 3  # 2 held out, and a target after WINDOW items of training history
MODELS = ["MoEMaTrRec", "SASRec", "RecMamba", "MambaRec"]  # the slowest first: two at a time
LONG_LAG = 32


def train(model, data_path, name="planted", epochs=30, **settings):
    """(test HR@10, epochs run) of ``model`` (with ``settings`` over its defaults) on the planted
    data ``name``, on one torch thread: the runs go two at a time, which on two cores takes about
    60% of their time one after the other."""
    import torch

    torch.set_num_threads(1)
    result = run(model, name, config_dict={
        "data_path": data_path, "MAX_ITEM_LIST_LENGTH": WINDOW, "train_mode": "all_positions",
        "train_batch_tokens": 320, "epochs": epochs, "show_progress": False, "state": "WARNING", **settings,
    }, saved=False)
    return result["test_result"]["hit@10"], result["epochs_run"]


@pytest.fixture(scope="module")
def planted_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    write_synthetic(str(root), users=USERS, length=LENGTH, items=ITEMS, lags=LAGS, noise=NOISE, name="planted")
    write_synthetic(str(root), users=USERS, length=LENGTH, items=ITEMS, lags=(LONG_LAG,), noise=NOISE,
                    name="planted-long")
    return str(root)


@pytest.fixture(scope="module")
def planted_runs(planted_data):
    """model -> future of :func:`train`, each in a process of its own."""
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield {model: pool.submit(train, model, planted_data) for model in MODELS}


def test_generated_rule_needs_the_context():
    _, lag = planted_sequences(USERS, LENGTH, ITEMS, LAGS, NOISE, seed=0)
    assert sorted(set(lag.tolist())) == list(LAGS)
    assert oracle_hit_rate(lag, ITEMS, NOISE, context=WINDOW) == 1.0
    assert oracle_hit_rate(lag, ITEMS, NOISE, context=8) < 0.6  # lag-8 users need 9 items


@pytest.mark.parametrize("model", MODELS)
def test_learns_the_planted_rule_with_shipped_defaults(planted_runs, model):
    hit, epochs = planted_runs[model].result()
    assert hit >= 0.75, f"{model}: test HR@10 {hit:.3f} after {epochs} epochs (chance 0.25)"


def test_a_delay_line_learns_a_lag_the_shipped_width_cannot(planted_data):
    """Lag 32: the item 31 steps back decides. A causal convolution of 40 taps reads it exactly; the
    shipped 4 taps leave it to the scan, which blurs it (chance HR@10 0.25)."""
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        runs = {d_conv: pool.submit(train, "MambaRec", planted_data, "planted-long", 12, d_conv=d_conv)
                for d_conv in (WINDOW, 4)}
        (delay_line, delay_epochs), (shipped, shipped_epochs) = runs[WINDOW].result(), runs[4].result()
    assert delay_line >= 0.9, f"d_conv {WINDOW}: test HR@10 {delay_line:.3f} after {delay_epochs} epochs"
    assert shipped < 0.6, f"d_conv 4: test HR@10 {shipped:.3f} after {shipped_epochs} epochs"
