"""benchmarks/bench_accuracy.py keeps a run only while the settings it trained with are unchanged."""

import pytest
import yaml

from recbole_mamba.config import properties_dir


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("bench_accuracy")


def test_a_run_is_identified_by_model_seed_and_every_setting(bench):
    shipped = bench.settings("MambaRec", "ml-100k", [])
    tuned = properties_dir() / "tuned" / "ml-100k" / "MambaRec.yaml"
    assert all(shipped[k] == v for k, v in yaml.safe_load(tuned.read_text()).items())  # the tuned file counts
    key = bench.run_key("MambaRec", 0, shipped)
    assert key == bench.run_key("MambaRec", 0, bench.settings("MambaRec", "ml-100k", []))
    assert key != bench.run_key("MambaRec", 1, shipped)
    assert key != bench.run_key("SASRec", 0, shipped)
    changed = bench.settings("MambaRec", "ml-100k", ["--learning_rate=0.0123"])
    assert changed["learning_rate"] == 0.0123 and bench.run_key("MambaRec", 0, changed) != key
    assert "seed" not in shipped and "ml-100k" == shipped["dataset"]


def test_the_table_states_the_train_mode_and_batch_order_of_each_model(bench):
    def row(model, seed, mode, order, ndcg):
        metrics = {"ndcg@10": ndcg, "hit@10": 2 * ndcg}
        return {"model": model, "seed": seed, "dataset": "ml-100k", "loss_type": "CE", "train_mode": mode,
                "max_len": 200, "protocol": "full ranking", "epochs": 10, "wall_s": 75.0, "valid": metrics,
                "test": metrics, "settings": {"train_batch_order": order}}

    rows = [row("MambaRec", 0, "all_positions", "length", 0.05), row("MambaRec", 1, "all_positions", "length", 0.07),
            row("SASRec", 0, "prefix", "length", 0.06)]
    lines = bench.table(rows).splitlines()
    assert lines[0] == "ml-100k; full ranking; mean ± std over seeds; selected on valid NDCG@10"
    assert lines[4] == ("| MambaRec | CE | all_positions (length order), 200 | 2 | 10 | 1 min 15 s | 0.0600 ± 0.0141 "
                        "| 0.1200 ± 0.0283 | 0.0600 ± 0.0141 | 0.1200 ± 0.0283 |")
    assert lines[5].startswith("| SASRec | CE | prefix, 200 | 1 | 10 | 1 min 15 s | 0.0600 ± 0.0000 ")
