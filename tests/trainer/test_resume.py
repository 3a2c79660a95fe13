"""An interrupted run, resumed, ends bit-identical to one never interrupted: weights, metrics,
epochs, early stopping; through ``run(resume=...)``, the command line, and an experiment cell
killed mid-training."""

import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import torch

from recbole_mamba.atomics.synthetic import write_synthetic
from recbole_mamba.experiment.cell import execute_cell
from recbole_mamba.quick_start import run
from recbole_mamba.trainer.checkpoint import load_checkpoint
from recbole_mamba.trainer.resume import find_resume_file, resume_file_of
from tests.conftest import SCRIPT

RUN = {"hidden_size": 16, "inner_size": 32, "n_layers": 1, "epochs": 5, "stopping_step": 2, "min_patience_steps": 0,
       "show_progress": False, "state": "WARNING", "MAX_ITEM_LIST_LENGTH": 10, "hidden_dropout_prob": 0.3,
       "attn_dropout_prob": 0.3}
CASES = {  # every source of randomness an epoch draws from
    "MambaRec, all positions, length-grouped batches, popularity SSM, sparse Adam": (
        "MambaRec", {"train_mode": "all_positions", "loss_type": "SSM", "train_negatives": 8,
                     "train_negatives_distribution": "popularity", "item_table_updates": "sparse",
                     "dropout_prob": 0.3, "train_batch_tokens": 400}),
    "MambaRec, all positions, uniform SSM, row-wise Adagrad item table": (
        "MambaRec", {"train_mode": "all_positions", "loss_type": "SSM", "train_negatives": 8,
                     "item_table_updates": "sparse", "item_table_optimizer": "rowwise_adagrad",
                     "item_table_learning_rate": 0.05, "dropout_prob": 0.3, "train_batch_tokens": 400}),
    "SASRec, prefix rows, RecBole's shuffling and BPR sampler, uni20 validation": (
        "SASRec", {"train_mode": "prefix", "loss_type": "BPR", "train_batch_size": 64,
                   "eval_args": {"mode": {"valid": "uni20", "test": "full"}}}),
}


def weights(path):
    return load_checkpoint(path)["state_dict"]


def assert_same_run(a, b):
    assert a["test_result"] == b["test_result"] and a["best_valid_result"] == b["best_valid_result"]
    assert a["epochs_run"] == b["epochs_run"]
    assert [e["valid_score"] for e in a["evaluations"]] == [e["valid_score"] for e in b["evaluations"]]
    x, y = weights(a["checkpoint"]), weights(b["checkpoint"])  # the best epoch's
    assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    assert not os.path.exists(resume_file_of(a["checkpoint"]))  # a finished run leaves no resume state


@pytest.mark.parametrize("case", CASES)
def test_a_run_stopped_by_a_signal_and_resumed_is_bit_identical(case, tiny_data_path, tmp_path, monkeypatch):
    model, overrides = CASES[case]
    config = {**RUN, **overrides, "data_path": tiny_data_path}
    (tmp_path / "whole").mkdir()
    (tmp_path / "parts").mkdir()
    monkeypatch.chdir(tmp_path / "whole")
    whole = run(model, "ml-tiny", config_dict=config)

    monkeypatch.chdir(tmp_path / "parts")

    def stop_after_epoch_1(epoch, score, result):
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the signal arrives here

    # Ctrl-C raises KeyboardInterrupt, however the suite was started (a background job's shell
    # ignores SIGINT, and Python then installs no handler)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            run(model, "ml-tiny", config_dict=config, epoch_callback=stop_after_epoch_1)
    finally:
        signal.signal(signal.SIGINT, previous)
    state = find_resume_file("saved")
    assert load_checkpoint(state)["epoch"] == 1
    resumed = run(None, None, resume="saved")
    assert_same_run(whole, resumed)
    assert resumed["epochs_run"] > 2  # it trained on after the interruption
    assert [e["epoch"] for e in resumed["evaluations"]] == list(range(resumed["epochs_run"]))


def test_the_command_line_resumes_a_killed_run(tiny_data_path, tmp_path, cli_main):
    args = [f"--data_path={tiny_data_path}", "--dataset=ml-tiny", "--hidden_size=16", "--epochs=40",
            "--stopping_step=40", "--MAX_ITEM_LIST_LENGTH=10", "--show_progress=False", "--train_mode=all_positions",
            "--train_batch_tokens=200"]
    (tmp_path / "whole").mkdir()
    (tmp_path / "parts").mkdir()
    code, whole, err = cli_main(tmp_path / "whole", *args)
    assert code == 0, err[-2000:]
    proc = subprocess.Popen([sys.executable, str(SCRIPT), *args], cwd=tmp_path / "parts",
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not glob.glob(str(tmp_path / "parts" / "saved" / "*-last.pth")):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    proc.kill()  # SIGKILL: no handler, no cleanup
    proc.wait()
    killed_at = load_checkpoint(find_resume_file(str(tmp_path / "parts" / "saved")))["epoch"]
    assert killed_at < 39
    code, resumed, err = cli_main(tmp_path / "parts", "--resume", "--checkpoint=saved")
    assert code == 0, err[-2000:]
    assert resumed == whole  # the same test table, best validation and training line


def test_resume_needs_a_state(tmp_path, cli_main):
    code, out, err = cli_main(tmp_path, "--resume", f"--checkpoint={tmp_path}")
    assert code == 2 and err.startswith(f"run_recbole_mamba.py: error: no resume state (*-last.pth) in {tmp_path}")


def test_a_cell_killed_mid_training_resumes_to_the_same_metrics(tmp_path):
    data_path = str(tmp_path / "data")
    write_synthetic(data_path, users=120, length=40, items=30, seed=1, name="gen")
    config = {**RUN, "epochs": 8, "stopping_step": 8, "data_path": data_path, "train_mode": "all_positions",
              "train_batch_tokens": 200, "state": "INFO"}
    never = execute_cell("MambaRec", "gen", config, ["full"], 1, "test-resume-never-killed")["metrics"]
    assert never["status"] == "done", never

    work = "test-resume-killed"
    folder = os.path.join(tempfile.gettempdir(), "recbole-mamba-cells", work)
    start = ("from recbole_mamba.experiment.cell import execute_cell; import sys, json; "
             f"execute_cell('MambaRec', 'gen', json.loads(sys.argv[1]), ['full'], 1, {work!r})")
    proc = subprocess.Popen([sys.executable, "-c", start, json.dumps(config)])
    deadline = time.time() + 120
    while not glob.glob(os.path.join(folder, "saved", "*-last.pth")):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    proc.kill()  # the worker dies; its cell process dies with it
    proc.wait()
    assert not os.path.exists(os.path.join(folder, "metrics.json"))
    resumed = execute_cell("MambaRec", "gen", config, ["full"], 1, work)
    log = resumed["log"]  # the killed run's, then the resumed one's
    assert "resumed" in log and log.count("epoch 0 training") == 1
    metrics = resumed["metrics"]
    for key in ("status", "evaluations", "epochs", "best_epoch", "parameters"):
        assert metrics[key] == never[key], key
    assert not os.path.exists(folder)  # finished: its checkpoints go
