"""A real grid through the CLI and Ray: every file written, an interrupted grid finished by
--resume, a re-run that runs no cell, failing cells recorded while the others finish."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import zlib

import yaml

from tests.conftest import SCRIPT, run_script

TINY = {"epochs": 2, "hidden_size": 16, "inner_size": 32, "n_layers": 1, "train_mode": "all_positions",
        "train_batch_tokens": 480, "show_progress": False, "state": "WARNING"}
GRID = {  # 2 models x 2 lengths x 1 seed, and 2 cells made to fail (a dataset that is not there)
    "name": "tiny", "models": ["MambaRec", "SASRec"], "seeds": [0], "protocols": ["full", "uni25"],
    "settings": TINY,
    "datasets": [{"name": "gen", "generate": {"users": 40, "length": 20, "items": 30, "lags": [1, 4], "seed": 3},
                  "lengths": [2, 8]},
                 {"name": "gone", "dataset": "not-converted", "lengths": [4]}],
}
CELLS = ["gen-MambaRec-2-0", "gen-SASRec-2-0", "gen-MambaRec-8-0", "gen-SASRec-8-0"]
FAILING = ["gone-MambaRec-4-0", "gone-SASRec-4-0"]


def _cell_processes(out):
    """Cell processes of the grid in ``out`` (their command line names their work folder)."""
    work = os.path.join(tempfile.gettempdir(), "recbole-mamba-cells", f"{zlib.crc32(str(out).encode()):08x}-")
    found = subprocess.run(["pgrep", "-f", f"recbole_mamba.experiment.cell {work}"], capture_output=True, text=True)
    return found.stdout.split()


def test_a_grid_is_interrupted_resumed_and_not_rerun(tmp_path, cli_main):
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(GRID))
    out = tmp_path / "out"
    # Ctrl-C as in a terminal: SIGINT at its default (a background job's shell ignores it, and
    # Python then installs no KeyboardInterrupt handler)
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--experiment=grid.yaml", f"--out={out}", "--max_concurrent=1"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
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
    assert _cell_processes(out) == []  # no cell left running

    resumed = run_script("--resume", f"--out={out}", "--max_concurrent=2", cwd=tmp_path)  # the stored experiment
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"tiny: 6 cells, {len(finished)} finished, {6 - len(finished)} to run" in resumed.stdout
    for cell in FAILING:  # recorded, and the grid went on
        metrics = json.loads((out / "cells" / cell / "metrics.json").read_text())
        assert metrics["status"] == "failed" and metrics["error"].startswith("ConfigError: unknown dataset"), metrics
        assert "Traceback" in (out / "cells" / cell / "log.txt").read_text()
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
    assert len(list((out / "plots").glob("gen_*.png"))) == 4 and not list((out / "plots").glob("gone_*"))
    results = (out / "results.md").read_text()
    assert "| 4 | failed | failed |" in results  # the failing dataset's row
    assert (tmp_path / "dataset_atomics" / "gen" / "gen.inter").exists()  # generated where the grid needed it

    stamps = {c: (out / "cells" / c / "metrics.json").stat().st_mtime_ns for c in CELLS}
    code, again, err = cli_main(tmp_path, "--experiment=grid.yaml", f"--out={out}")  # in this process: starts no cell
    assert code == 0, err[-3000:]
    assert "tiny: 6 cells, 6 finished, 0 to run" in again and "[1/6]" not in again
    assert stamps == {c: (out / "cells" / c / "metrics.json").stat().st_mtime_ns for c in CELLS}

    code, _, err = cli_main(tmp_path, "--experiment=grid.yaml", f"--out={out}", "--epochs=3")
    assert code == 2 and "holds another experiment" in err
