"""The command line, run as a user runs it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "run_recbole_mamba.py"
TINY_ARGS = [
    "--hidden_size=16", "--inner_size=32", "--MAX_ITEM_LIST_LENGTH=20", "--epochs=1",
    "--show_progress=False",
]


def cli(*args, cwd):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True,
        timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


RUNS = [
    ("MambaRec", "CE", "prefix"), ("MambaRec", "BPR", "prefix"), ("MambaRec", "BCE", "prefix"),
    ("RecMamba", "BCE", "prefix"), ("RecMamba", "CE", "prefix"),
    ("MoEMaTrRec", "CE", "prefix"),
    ("SASRec", "CE", "prefix"), ("GRU4Rec", "CE", "prefix"),
    ("MambaRec", "CE", "all_positions"), ("RecMamba", "BCE", "all_positions"),
    ("SASRec", "BPR", "all_positions"), ("GRU4Rec", "CE", "all_positions"),
]


@pytest.mark.parametrize("model,loss_type,train_mode", RUNS)
def test_trains_one_epoch_and_prints_test_metrics(model, loss_type, train_mode, tiny_data_path, tmp_path):
    proc = cli(f"--model={model}", "--dataset=ml-tiny", f"--data_path={tiny_data_path}",
               f"--loss_type={loss_type}", f"--train_mode={train_mode}", *TINY_ARGS, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{model} on ml-tiny — test, full ranking, leave-one-out by time"
    header = lines[1].split()
    assert header == ["@10", "@20"]
    rows = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in lines[2:5]}
    assert set(rows) == {"hit", "ndcg", "mrr"}
    assert all(0 <= v <= 1 for values in rows.values() for v in values)
    assert lines[5].startswith("best valid: hit@10")
    # RecBole's parameter count and FLOPs are logged (its get_flops must not crash)
    assert "Trainable parameters:" in proc.stderr and "FLOPs:" in proc.stderr
    assert f"train_mode: {train_mode}" in proc.stderr
    if model == "MoEMaTrRec":  # mean gate weights, logged at each evaluation
        assert proc.stderr.count("gate/layer0/attention") >= 2


def test_help_lists_models_datasets_and_options(tiny_data_path, tmp_path):
    (tmp_path / "dataset_atomics" / "my-data").mkdir(parents=True)
    (tmp_path / "dataset_atomics" / "my-data" / "my-data.inter").write_text("user_id:token\n")
    proc = cli("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for word in ("MambaRec", "RecMamba", "MoEMaTrRec", "SASRec", "GRU4Rec", "ml-100k", "my-data",
                 "--config_files", "--epochs", "--train_mode", "--tune", "--params_file"):
        assert word in proc.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model=NoSuchModel"], "unknown model 'NoSuchModel'; choose one of"),
        (["--dataset=no-such-data"], "unknown dataset 'no-such-data'"),
        (["epochs=2"], "malformed argument 'epochs=2'"),
        (["--config_files=missing.yaml"], "config file not found: missing.yaml"),
    ],
)
def test_bad_input_is_one_clear_line(args, message, tmp_path):
    proc = cli(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
