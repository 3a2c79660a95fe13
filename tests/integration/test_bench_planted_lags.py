"""benchmarks/bench_planted_lags.py: its lag profile, its table and the identity of its runs."""

import math

import pytest
import torch


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("bench_planted_lags")


class ReadsOneDistance(torch.nn.Module):
    """Last-position output: the one-hot of the item ``distance`` steps before the last."""

    def __init__(self, distance, n_ids):
        super().__init__()
        self.distance, self.n_ids = distance, n_ids

    def forward(self, item_seq, item_seq_len):
        assert bool((item_seq_len == item_seq.shape[1]).all())
        return torch.nn.functional.one_hot(item_seq[:, -1 - self.distance], self.n_ids).float()


def test_the_lag_profile_finds_the_one_distance_a_model_reads(bench):
    ids = torch.arange(1, 41) * 2  # item i has id 2i: the profile must go through ids
    profile = bench.lag_profile(ReadsOneDistance(9, 81), ids, lag=10, window=30)
    assert len(profile) == 30
    # a changed item moves the one-hot by sqrt(2), unless the draw is the same item (1 in 40)
    assert profile[9] == pytest.approx(math.sqrt(2) * 39 / 40, abs=0.15)
    assert all(value == 0 for d, value in enumerate(profile) if d != 9)
    lines = bench.profile_lines([{"model": "Reader", "lag": 10, "profile": profile}])
    assert lines == [f"Reader lag 10: change at d = 9: {profile[9]:.3f} (beside it: 0.000, 0.000); "
                     "largest elsewhere at d = 1: 0.000"]
    shifted = bench.profile_lines([{"model": "Reader", "lag": 4, "profile": [0.9, 0.1, 0.0, 0.5, 0.0, 0.2, 0.0, 0.8]}])
    assert shifted == ["Reader lag 4: change at d = 3: 0.500 (beside it: 0.000, 0.000); "
                       "largest elsewhere at d = 5: 0.200"]  # not d = 0, nor d = 7 = 2 x 4 - 1


def test_the_table_has_a_cell_per_model_and_lag(bench):
    args, lags, _ = bench._parse(["--lags=4,64", "--window=80", "--epochs=30"])
    rows = [
        {"model": "SASRec", "lag": 4, "loss_type": "CE", "test_hit10": 1.0, "learned_epoch": 3, "epochs": 9},
        {"model": "SASRec", "lag": 64, "loss_type": "CE", "test_hit10": 0.98, "learned_epoch": 21, "epochs": 27},
        {"model": "MambaRec", "lag": 64, "loss_type": "CE", "test_hit10": 0.24, "learned_epoch": None, "epochs": 30},
    ]
    lines = bench.table(rows, ["SASRec", "MambaRec"], lags, args).splitlines()
    assert lines[0].startswith("planted rule, one lag per dataset: 400 users x 83 items, 40 items (chance HR@10 "
                               "0.25), window 80, batches of 8 windows, at most 30 epochs")
    assert lines[2:] == ["| model | loss | lag 4 | lag 64 |", "|---|---|---|---|",
                         "| SASRec | CE | 1.00 (3 / 9) | 0.98 (21 / 27) |",
                         "| MambaRec | CE |  | 0.24 (- / 30) |"]
    caption = bench.table(rows, ["SASRec"], lags, args, ["--stopping_step=1000"]).splitlines()[0]
    assert "at most 30 epochs, shipped defaults and early stopping but --stopping_step=1000; test HR@10" in caption


def test_a_run_is_identified_by_model_lag_data_and_settings(bench):
    args, _, overrides = bench._parse(["--window=80"])
    key = bench.run_key("MambaRec", 16, args, overrides)
    assert key == bench.run_key("MambaRec", 16, *bench._parse(["--window=80"])[::2])
    assert key != bench.run_key("MambaRec", 32, args, overrides)
    assert key != bench.run_key("SASRec", 16, args, overrides)
    assert key != bench.run_key("MambaRec", 16, *bench._parse(["--window=81"])[::2])
    assert key != bench.run_key("MambaRec", 16, *bench._parse(["--learning_rate=0.003"])[::2])


def test_a_lag_the_window_cannot_hold_is_refused(bench):
    with pytest.raises(SystemExit, match="must exceed the longest lag"):
        bench._parse(["--lags=4,80", "--window=80"])
