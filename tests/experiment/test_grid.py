"""A real grid through the CLI and Ray: every file written, an interrupted grid finished by
--resume, a re-run that runs no cell, a failing cell recorded while the others finish."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import zlib

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(ROOT, "run_recbole_mamba.py")
TINY = {"epochs": 2, "hidden_size": 16, "inner_size": 32, "n_layers": 1, "train_mode": "all_positions",
        "train_batch_tokens": 480, "show_progress": False}
GRID = {
    "name": "tiny", "models": ["MambaRec", "SASRec"], "seeds": [0], "protocols": ["full", "uni25"],
    "settings": TINY,
    "datasets": [{"name": "gen", "generate": {"users": 40, "length": 20, "items": 30, "lags": [1, 4], "seed": 3},
                  "lengths": [2, 8]}],
}
CELLS = ["gen-MambaRec-2-0", "gen-SASRec-2-0", "gen-MambaRec-8-0", "gen-SASRec-8-0"]


def _cli(cwd, *args):
    return subprocess.run([sys.executable, CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def _cell_processes():
    out = subprocess.run(["pgrep", "-f", "recbole_mamba.experiment.cell"], capture_output=True, text=True)
    return out.stdout.split()


def test_a_grid_is_interrupted_resumed_and_not_rerun(tmp_path):
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(GRID))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, CLI, "--experiment=grid.yaml", f"--out={out}", "--max_concurrent=1"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while not (out / "cells" / CELLS[0] / "metrics.json").exists():  # the first cell is finished: Ctrl-C
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.poll() is not None else ""
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output[-3000:]
    assert "interrupted: the finished cells are kept" in output
    finished = {c for c in CELLS if (out / "cells" / c / "metrics.json").exists()}
    assert CELLS[0] in finished and len(finished) < len(CELLS)
    time.sleep(1)
    assert _cell_processes() == []  # no cell left running

    resumed = _cli(tmp_path, "--resume", f"--out={out}", "--max_concurrent=2")  # the stored experiment
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"tiny: 4 cells, {len(finished)} finished, {4 - len(finished)} to run" in resumed.stdout
    for cell in CELLS:
        folder = out / "cells" / cell
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["status"] == "done", metrics
        assert set(metrics["evaluations"]) == {"full", "uni25"}
        assert metrics["epochs"] == 2 and metrics["train_s_per_epoch"] > 0 and metrics["peak_memory_mb"] > 100
        assert metrics["memory_kind"] == "peak RSS" and metrics["dataset_stats"]["users"] == 40
        config = yaml.safe_load((folder / "config.yaml").read_text())
        assert config["MAX_ITEM_LIST_LENGTH"] == int(cell.split("-")[2]) and config["eval_args"] == {"mode": "full"}
        assert "Traceback" not in (folder / "log.txt").read_text()
    work = os.path.join(tempfile.gettempdir(), "recbole-mamba-cells")
    assert not [n for n in os.listdir(work) if n.startswith(f"{zlib.crc32(str(out).encode()):08x}-")]  # cleaned
    for name in ("results.csv", "results.md", "efficiency.md", "datasets.md", "experiment.yaml"):
        assert (out / name).stat().st_size > 100, name
    assert len(list((out / "plots").glob("gen_*.png"))) == 4
    assert (tmp_path / "dataset_atomics" / "gen" / "gen.inter").exists()  # generated where the grid needed it

    stamps = {c: (out / "cells" / c / "metrics.json").stat().st_mtime_ns for c in CELLS}
    again = _cli(tmp_path, "--experiment=grid.yaml", f"--out={out}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "tiny: 4 cells, 4 finished, 0 to run" in again.stdout and "[1/4]" not in again.stdout
    assert stamps == {c: (out / "cells" / c / "metrics.json").stat().st_mtime_ns for c in CELLS}

    changed = _cli(tmp_path, "--experiment=grid.yaml", f"--out={out}", "--epochs=3")
    assert changed.returncode == 2 and "holds another experiment" in changed.stderr


def test_a_failing_cell_is_recorded_and_the_others_finish(tmp_path):
    grid = {**GRID, "name": "fails", "protocols": ["full"], "model_settings": {"SASRec": {"n_heads": 3}},
            "datasets": [{**GRID["datasets"][0], "lengths": [4]}]}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    proc = _cli(tmp_path, "--experiment=grid.yaml", "--out=out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    failed = json.loads((tmp_path / "out" / "cells" / "gen-SASRec-4-0" / "metrics.json").read_text())
    assert failed["status"] == "failed"
    assert failed["error"].startswith("ValueError: The hidden size (16) is not a multiple of the number of attention")
    assert "Traceback" in (tmp_path / "out" / "cells" / "gen-SASRec-4-0" / "log.txt").read_text()
    done = json.loads((tmp_path / "out" / "cells" / "gen-MambaRec-4-0" / "metrics.json").read_text())
    assert done["status"] == "done"
    results = (tmp_path / "out" / "results.md").read_text()
    assert "| 4 | " in results and "| failed |" in results
