"""A real search on a real Ray cluster (``ray start --head`` from this environment, token
authentication on, as Ray turns it on where a token exists, stopped afterwards): 3 fixed trials x 2
epochs on a tiny ml-100k subset, one of them failing, then resumed; without the cluster's token the
search is refused in one line. A local search killed mid-trial: test_search_resume.py."""

import contextlib
import csv
import importlib.util
import os
import secrets
import socket
import subprocess
import sys

import yaml

from tests.conftest import SCRIPT, run_script

RAY = os.path.join(os.path.dirname(sys.executable), "ray")
# Rays since token authentication (2.60 here; not 2.43, the oldest the plugin takes)
TOKEN_AUTHENTICATION = importlib.util.find_spec("ray._private.authentication") is not None


@contextlib.contextmanager
def ray_cluster():
    """A head node on a free port: yields (its address, the environment that holds its token)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    auth = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    start = subprocess.run([RAY, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
                            "--include-dashboard=false", "--disable-usage-stats"],
                           capture_output=True, text=True, timeout=180, env=auth)
    try:
        assert start.returncode == 0, start.stderr[-3000:]
        yield f"127.0.0.1:{port}", auth
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120)


def test_search_on_a_cluster_records_trials_failures_best_yaml_and_resumes(tiny_data_path, tmp_path, cli_main):
    (tmp_path / "space.yaml").write_text("dropout_prob: {trial: [0.1, 0.3, 2.0]}\n"
                                         "weight_decay: {trial: [0.0, 1.0e-4, 0.0]}\n")
    common = ["--tune", "--params_file=space.yaml", "--dataset=ml-tiny", f"--data_path={tiny_data_path}",
              "--epochs=2", "--hidden_size=16", "--MAX_ITEM_LIST_LENGTH=20", "--show_progress=False",
              "--tune_dir=out", "--max_concurrent=2", "--scheduler=fifo"]  # ASHA: test_asha.py
    code, _, err = cli_main(tmp_path, *common, "--num_samples=2")
    assert code == 2 and "fixes 3 trials; --num_samples=2 would drop some" in err
    with ray_cluster() as (address, auth):
        common.append(f"--ray_address={address}")
        if TOKEN_AUTHENTICATION:
            refused = run_script(*common, cwd=tmp_path, timeout=300)
            assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1] == (
                f"{SCRIPT.name}: error: the Ray cluster at {address} wants its authentication token: set "
                "RAY_AUTH_MODE=token, and RAY_AUTH_TOKEN (or the token in ~/.ray/auth_token) to the cluster's token")
        proc = run_script(*common, cwd=tmp_path, timeout=600, env=auth)
        assert proc.returncode == 0, proc.stderr[-3000:]
        status = subprocess.run([RAY, "status", f"--address={address}"], capture_output=True, text=True,
                                timeout=120, env=auth)
        assert status.returncode == 0 and "2.0 CPU" in status.stdout, status.stdout  # the cluster is the one used
        out = tmp_path / "out"
        with open(out / "results.csv") as f:
            rows = {row["dropout_prob"]: row for row in csv.DictReader(f)}
        assert set(rows) == {"0.1", "0.3", "2.0"}  # each trial once, as written
        assert [rows[d]["weight_decay"] for d in ("0.1", "0.3", "2.0")] == ["0.0", "0.0001", "0.0"]
        assert rows["2.0"]["status"].startswith("failed: ValueError: dropout probability")
        for ok in ("0.1", "0.3"):
            assert rows[ok]["status"] == "completed" and rows[ok]["epochs_run"] == "2"
            assert 0 <= float(rows[ok]["test/ndcg@10"]) <= 1
        assert "| dropout_prob | weight_decay | best_valid |" in (out / "results.md").read_text()
        best_text = (out / "best.yaml").read_text()
        best = yaml.safe_load(best_text)
        listed = [line for line in best_text.splitlines() if line.startswith("#   ")]  # every trial, in order
        assert [line.split(": ")[1] for line in listed] == [
            "dropout_prob=0.1, weight_decay=0.0", "dropout_prob=0.3, weight_decay=0.0001", "dropout_prob=2.0, weight_decay=0.0"]
        assert ": - (0 epochs, failed: ValueError: dropout probability" in listed[2]
        assert sum(line.endswith("<- best") for line in listed) == 1
        assert (best["dropout_prob"], best["weight_decay"]) in ((0.1, 0.0), (0.3, 1.0e-4)) and best["epochs"] == 2 and os.path.isabs(best["data_path"])
        assert (out / "ray").is_dir()
        code, _, err = cli_main(tmp_path, *common)  # a new search would mix its trials into Ray's folder
        assert code == 2 and err.strip().endswith(
            f"error: {out} already holds a search: continue it with --resume, or give another --tune_dir")
        resumed = run_script(*common, "--resume", cwd=tmp_path, timeout=600, env=auth)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
    with open(out / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == 3


def test_invalid_space_fails_before_ray_starts(cli_main, tmp_path):
    (tmp_path / "space.yaml").write_text("learning_rate: {loguniform: [0, 1]}\n")
    code, _, err = cli_main(tmp_path, "--tune", "--params_file=space.yaml")
    assert code == 2
    assert err.strip().splitlines() == [
        "run_recbole_mamba.py: error: space.yaml line 1: learning_rate: loguniform needs low > 0, got 0"
    ]
    code, _, _ = cli_main(tmp_path, "--tune", "--params_file=space.yaml", "--learning_rate=0.1")
    assert code == 2
    for option in ("--grace_period=0", "--max_concurrent=-1"):
        code, _, err = cli_main(tmp_path, "--tune", "--params_file=space.yaml", option)
        name, value = option[2:].split("=")
        assert code == 2 and err.strip().endswith(f"error: {name} must be a positive integer, got '{value}'"), err


def test_conflicting_fixed_and_searched_parameter(cli_main, tmp_path):
    (tmp_path / "space.yaml").write_text("learning_rate: {loguniform: [0.001, 0.1]}\n")
    code, _, err = cli_main(tmp_path, "--tune", "--params_file=space.yaml", "--learning_rate=0.1")
    assert code == 2 and "both searched in space.yaml and fixed" in err
