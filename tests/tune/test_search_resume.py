"""A search killed (SIGKILL, driver and Ray with it) in the middle of a trial, resumed with
--resume: the trial continues from its checkpoint (its run's resume state) after the epochs it had
reported, and ends with the metrics of the same search never interrupted."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

from tests.conftest import SCRIPT, run_script
from tests.tune.test_search import RAY


def search_args(tiny_data_path, tune_dir):
    return ["--tune", "--params_file=space.yaml", "--dataset=ml-tiny", f"--data_path={tiny_data_path}",
            "--epochs=3", "--stopping_step=10", "--hidden_size=16", "--MAX_ITEM_LIST_LENGTH=20",
            "--show_progress=False", f"--tune_dir={tune_dir}", "--scheduler=fifo"]


def rows_of(tune_dir):
    with open(tune_dir / "results.csv") as f:
        return list(csv.DictReader(f))


def checkpoint_recorded(experiment):
    """Whether the driver's saved experiment state holds a checkpoint of the trial: what a restore
    reads (a checkpoint written, or a result logged, but not yet in the saved state is not resumed
    from). The trial's checkpoint manager is saved cloudpickled, as hex; its checkpoints' folder
    names are in it as text."""
    for path in experiment.glob("experiment_state-*.json"):
        try:
            trials = json.loads(path.read_text())["trial_data"]
        except (OSError, ValueError, KeyError):  # being replaced as we read it
            continue
        for _, trial_state in trials:
            manager = json.loads(trial_state).get("checkpoint_manager", {})
            if b"checkpoint_0" in bytes.fromhex(manager.get("value", "")):
                return True
    return False


def stop_ray():
    """Ray's processes the killed driver left (a later ray.init would join them)."""
    subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120)


def test_a_killed_search_resumes_its_trial_from_the_checkpoint(tiny_data_path, tmp_path):
    (tmp_path / "space.yaml").write_text("dropout_prob: {trial: [0.1]}\n")
    whole = run_script(*search_args(tiny_data_path, tmp_path / "whole"), cwd=tmp_path, timeout=600)
    assert whole.returncode == 0, whole.stderr[-3000:]
    (expected,) = rows_of(tmp_path / "whole")
    assert expected["status"] == "completed" and expected["epochs_run"] == "3"
    assert expected["resumed_after_epochs"] == "0"

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(SCRIPT), *search_args(tiny_data_path, killed)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            # the driver records the experiment after every result (Ray's default: at most
                            # once every 10 s, longer than this tiny trial may take)
                            env={**os.environ, "PYTHONWARNINGS": "ignore", "TUNE_GLOBAL_CHECKPOINT_S": "0"})
    deadline = time.time() + 300
    try:
        while not checkpoint_recorded(killed / "ray"):
            assert proc.poll() is None and time.time() < deadline, "the search ended before a checkpoint"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        stop_ray()
    assert not (killed / "results.csv").exists()  # killed before the trial finished

    resumed = run_script(*search_args(tiny_data_path, killed), "--resume", cwd=tmp_path, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (row,) = rows_of(killed)
    assert row["status"] == "completed" and row["epochs_run"] == "3"
    assert 1 <= int(row["resumed_after_epochs"]) < 3  # continued, not started again
    metrics = [key for key in expected if key.startswith("test/")] + ["best_valid"]
    assert len(metrics) > 4 and {key: row[key] for key in metrics} == {key: expected[key] for key in metrics}
