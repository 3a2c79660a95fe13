"""The experiment's tables and plots, from recorded cells (no training here)."""

import csv
import re
import statistics
import struct

import pytest

from recbole_mamba.experiment import parse_experiment, write_reports

SPEC = {
    "name": "t", "models": ["SASRec", "MambaRec"], "seeds": [0, 1, 2], "protocols": ["full", "uni100"],
    "datasets": [{"name": "gen", "generate": {"users": 10}, "lengths": [8, 64]}],
}
PROTOCOLS = {"full": "full ranking, leave-one-out by time, no history masking",
             "uni100": "100 uniformly sampled negatives, leave-one-out by time, no history masking"}


def _metrics(model, length, seed):
    base = 0.1 * (model == "MambaRec") + length / 1000 + seed / 100
    evaluations = {mode: {"protocol": PROTOCOLS[mode],
                          "valid": {"ndcg@10": base, "hit@10": 2 * base},
                          "test": {"hit@10": 2 * base + shift, "ndcg@10": base + shift, "hit@20": 3 * base,
                                   "ndcg@20": 1.5 * base, "mrr@10": base / 2, "mrr@20": base / 2}}
                   for mode, shift in (("full", 0.0), ("uni100", 0.3))}
    return {"status": "done", "error": None, "evaluations": evaluations, "parameters": 1000 + length,
            "epochs": 10 + seed, "best_epoch": 7, "train_s_per_epoch": length / 10, "valid_s_per_epoch": 0.5,
            "test_s": 0.25, "time_to_best_s": 30.0 + seed, "wall_s": 99.0, "peak_memory_mb": 500.0 + length,
            "memory_kind": "peak RSS", "device": "CPU, 1 thread",
            "dataset_stats": {"users": 10, "items": 500, "interactions": 2000, "avg_seq_len": 200.0,
                              "median_seq_len": 200.0, "max_seq_len": 200}}


@pytest.fixture
def reports(tmp_path):
    experiment = parse_experiment(SPEC, "t.yaml")
    records = {c.id: _metrics(c.model, c.length, c.seed) for c in experiment.cells()}
    records["gen-SASRec-64-1"] = {"status": "oom", "error": "OutOfMemoryError: CUDA out of memory"}
    records["gen-SASRec-64-2"] = {"status": "failed", "error": "RuntimeError: boom"}
    del records["gen-MambaRec-8-2"]  # not run yet
    rows = write_reports(experiment, str(tmp_path), records, notes={"gen": "generated"},
                         oracles={"gen": lambda length, k: 0.5 + length / 1000})
    return experiment, tmp_path, rows


def _md_cells(text, caption_start):
    """{(length, model): cell text} of the table after the caption that starts so."""
    block = text.split(caption_start, 1)[1].split("\n\n")[1]
    lines = block.strip().splitlines()
    header = [h.strip() for h in lines[0].strip("|").split("|")]
    cells = {}
    for line in lines[2:]:
        values = [v.strip() for v in line.strip("|").split("|")]
        for name, value in zip(header[1:], values[1:], strict=True):
            cells[(int(values[0]), name)] = value
    return cells


NUMBER = re.compile(r"(\d+\.\d+) ± (\d+\.\d+)")


def test_results_md_parses_back_to_the_csv(reports):
    experiment, out, rows = reports
    with open(out / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows) == 2 * (2 * 2 * 3 - 1)  # a row per recorded cell and protocol
    assert {"dataset", "model", "length", "seed", "status", "protocol", "valid_ndcg@10", "test_hit@10",
            "test_ndcg@10", "test_hit@20", "test_ndcg@20", "train_s_per_epoch", "test_s", "time_to_best_s",
            "peak_memory_mb"} <= set(table[0])
    text = (out / "results.md").read_text()
    checked = 0
    for mode in ("full", "uni100"):
        for k in (10, 20):
            cells = _md_cells(text, f"**gen** — test HR@{k} / NDCG@{k}, mean ± std over 3 seeds (n = seeds done "
                                    f"where fewer); {PROTOCOLS[mode]}")
            for (length, model), cell in cells.items():
                if model.startswith("oracle"):
                    assert mode == "full" and float(cell) == pytest.approx(0.5 + length / 1000)
                    continue
                done = [r for r in table if r["model"] == model and int(r["length"]) == length
                        and r["eval_mode"] == mode and r["status"] == "done"]
                if model == "SASRec" and length == 64:
                    assert cell.startswith("**") is False and "(n=1)" in cell
                found = NUMBER.findall(cell)
                assert len(found) == 2, cell
                for (mean, std), metric in zip(found, (f"test_hit@{k}", f"test_ndcg@{k}"), strict=True):
                    values = [float(r[metric]) for r in done]
                    assert float(mean) == pytest.approx(statistics.fmean(values), abs=5e-5)
                    assert float(std) == pytest.approx(statistics.stdev(values) if len(values) > 1 else 0, abs=5e-5)
                    checked += 1
    assert checked == 2 * 2 * 4 * 2
    full10 = _md_cells(text, f"**gen** — test HR@10 / NDCG@10, mean ± std over 3 seeds (n = seeds done where "
                             f"fewer); {PROTOCOLS['full']}")
    assert full10[(8, "MambaRec")].count("**") == 4 and "(n=2)" in full10[(8, "MambaRec")]  # best HR and NDCG
    assert "**" not in full10[(8, "SASRec")]


def test_a_cell_that_did_not_finish_is_shown_as_such(tmp_path):
    experiment = parse_experiment({**SPEC, "seeds": [0]}, "t.yaml")
    records = {"gen-SASRec-8-0": {"status": "oom", "error": "OutOfMemoryError"},
               "gen-MambaRec-8-0": {"status": "failed", "error": "RuntimeError: boom"},
               "gen-SASRec-64-0": _metrics("SASRec", 64, 0)}
    write_reports(experiment, str(tmp_path), records)
    cells = _md_cells((tmp_path / "results.md").read_text(), "**gen** — test HR@10 / NDCG@10")
    assert (cells[(8, "SASRec")], cells[(8, "MambaRec")], cells[(64, "MambaRec")]) == ("OOM", "failed", "–")
    efficiency = (tmp_path / "efficiency.md").read_text()
    assert "| 8 | SASRec | OOM | OOM |" in efficiency and "| 64 | MambaRec | – |" in efficiency
    with open(tmp_path / "results.csv", newline="") as f:
        failed = [r for r in csv.DictReader(f) if r["status"] == "failed"]
    assert failed and failed[0]["error"] == "RuntimeError: boom"


def test_efficiency_and_datasets_tables(reports):
    _, out, _ = reports
    efficiency = (out / "efficiency.md").read_text()
    assert "memory: peak RSS of each cell's own process; device: CPU, 1 thread" in efficiency
    # MambaRec at 64: 3 seeds, peak memory 564, 6.40 s / epoch, epochs 10, 11, 12
    assert "| 64 | MambaRec | 1,064 | 564 | 6.40 | 0.25 | 11.0 | 31.0 |" in efficiency
    datasets = (out / "datasets.md").read_text()
    assert "| gen | 10 | 500 | 2,000 | 200.0 | 200.0 | 200 |" in datasets and "gen: generated" in datasets


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plots_are_pngs_of_each_metric(reports):
    _, out, _ = reports
    names = sorted(p.name for p in (out / "plots").iterdir())
    assert names == ["gen_hr10.png", "gen_memory.png", "gen_ndcg10.png", "gen_train_time.png"]
    for name in names:
        width, height = _png_size(out / "plots" / name)
        assert (width, height) == (600, 400) and (out / "plots" / name).stat().st_size > 10_000
