"""benchmarks/bench_accuracy.py keeps a run only while the settings it trained with are unchanged."""

import importlib.util
from pathlib import Path

import pytest
import yaml

from recbole_mamba.config import properties_dir

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_accuracy.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_accuracy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
