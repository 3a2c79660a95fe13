"""2 gloo ranks train the model 1 process trains: the same parameters after several Adam steps
(|dtheta| <= 1e-5, CE, SSM with sparse item-table updates and SSM with dropout, all positions in length-grouped batches of uneven shares), and the
same full-ranking validation and uni100 test metrics, to 12 decimals."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from recbole_mamba.quick_start import run
from recbole_mamba.trainer.checkpoint import load_checkpoint
from tests.conftest import TINY_CONFIG

FORKED_RUN = Path(__file__).with_name("forked_run.py")
RUN = {**TINY_CONFIG, "train_mode": "all_positions", "train_batch_order": "length", "train_batch_size": 16,
       "epochs": 2, "stopping_step": 10, "eval_batch_size": 16, "dropout_prob": 0.0,
       "eval_args": {"mode": {"valid": "full", "test": "uni100"}}, "metric_decimal_place": 12, "state": "WARNING"}
LOSSES = {"CE": {"loss_type": "CE"},  # SSM's shared negatives in the next two
          "SSM, sparse item table": {"loss_type": "SSM", "train_negatives": 32, "item_table_updates": "sparse"},
          "SSM, dropout 0.3": {"loss_type": "SSM", "train_negatives": 32, "dropout_prob": 0.3},
          # RecBole's SASRec: attention dropout on (rows, heads, L, L) and hidden dropout
          "SASRec, CE, dropout 0.3": {"model": "SASRec", "loss_type": "CE", "hidden_dropout_prob": 0.3,
                                      "attn_dropout_prob": 0.3}}


def metrics(result):
    return {key: float(value) for key, value in result.items()}


@pytest.mark.parametrize("loss", LOSSES)
def test_two_ranks_train_and_evaluate_as_one_process(loss, tiny_data_path, tmp_path, monkeypatch):
    config = {**RUN, **LOSSES[loss], "data_path": tiny_data_path}
    model = config.pop("model", "MambaRec")
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    monkeypatch.chdir(tmp_path / "one")
    one = run(model, "ml-tiny", config_dict=config)

    subprocess.run([sys.executable, str(FORKED_RUN), json.dumps(config), str(tmp_path / "two"), model],
                   cwd=tmp_path / "two", check=True, timeout=300, capture_output=True)
    two = json.loads((tmp_path / "two" / "result.json").read_text())

    assert two["epochs_run"] == one["epochs_run"] == 2
    x, y = load_checkpoint(one["checkpoint"])["state_dict"], load_checkpoint(two["checkpoint"])["state_dict"]
    assert x.keys() == y.keys()
    assert max((x[key].double() - y[key].double()).abs().max().item() for key in x) <= 1e-5
    assert two["valid"] == metrics(one["best_valid_result"])
    assert two["test"] == metrics(one["test_result"])

    # every rank planned the same epochs and took its share of each batch: together all positions,
    # each rank some, and the shares uneven (where a mean of the ranks' means would be wrong)
    shares = [json.loads((tmp_path / "two" / f"shares-{rank}.json").read_text()) for rank in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == 2
    batches = [(a, b) for epoch0, epoch1 in zip(*shares, strict=True) for a, b in zip(epoch0, epoch1, strict=True)]
    assert batches and all(a[1] == b[1] == a[0] + b[0] and a[0] > 0 and b[0] > 0 for a, b in batches)
    assert any(a[0] != b[0] for a, b in batches)
