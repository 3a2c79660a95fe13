"""The command line, run as a user runs it."""

from pathlib import Path

import pytest

from tests.conftest import run_script

TINY_ARGS = [
    "--hidden_size=16", "--inner_size=32", "--MAX_ITEM_LIST_LENGTH=20", "--epochs=1",
    "--show_progress=False",
]


# The command line end to end for a few runs; tests/integration/test_quick_start.py trains every
# loss in both train modes through quick_start.run, which the command line calls.
RUNS = [("MambaRec", "BPR", "prefix"), ("MoEMaTrRec", "CE", "prefix"), ("GRU4Rec", "CE", "all_positions")]


@pytest.mark.parametrize("model,loss_type,train_mode", RUNS)
def test_trains_one_epoch_and_prints_test_metrics(model, loss_type, train_mode, tiny_data_path, tmp_path):
    proc = run_script(f"--model={model}", "--dataset=ml-tiny", f"--data_path={tiny_data_path}",
                      f"--loss_type={loss_type}", f"--train_mode={train_mode}", *TINY_ARGS, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{model} on ml-tiny — test, full ranking, leave-one-out by time, no history masking"
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


def test_help_lists_models_datasets_and_options(cli_main, tmp_path):
    (tmp_path / "dataset_atomics" / "my-data").mkdir(parents=True)
    (tmp_path / "dataset_atomics" / "my-data" / "my-data.inter").write_text("user_id:token\n")
    code, out, _ = cli_main(tmp_path, "--help")
    assert code == 0
    for word in ("MambaRec", "RecMamba", "MoEMaTrRec", "SASRec", "GRU4Rec", "ml-100k", "my-data",
                 "--config_files", "--epochs", "--train_mode", "--tune", "--params_file", "--experiment",
                 "--cpus_per_cell", "--resume"):
        assert word in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model=NoSuchModel"], "unknown model 'NoSuchModel'; choose one of"),
        (["--dataset=no-such-data"], "unknown dataset 'no-such-data'"),
        (["epochs=2"], "malformed argument 'epochs=2'"),
        (["--config_files=missing.yaml"], "config file not found: missing.yaml"),
        (["--epochs=abc"], "epochs must be an integer, got 'abc'"),
        (["--model=S3Rec"], "model 'S3Rec' is not supported by recbole-mamba: it needs RecBole's S3RecTrainer"),
        (["--dataset=kuairand"], "make it with: python -m recbole_mamba.atomics kuairand"),
        (["--evaluate"], "--evaluate needs --checkpoint=PATH"),
        (["--evaluate", "--checkpoint=nope.pth"], "checkpoint not found: nope.pth"),
        (["--recommend"], "--recommend needs --checkpoint=PATH (a checkpoint written by training)"),
        (["--recommend", "--checkpoint=nope.pth"], "checkpoint not found: nope.pth"),
        (["--tune", "--params_file=x.yaml", "--num_samples=many"], "num_samples must be a positive integer, got 'many'"),
        (["--experiment=nope.yaml"], "experiment file not found: nope.yaml"),
        (["--experiment=nope.yaml", "--model=SASRec"], "--experiment takes no --model"),
        (["--experiment=nope.yaml", "--max_concurrent=two"], "max_concurrent must be a positive integer, got 'two'"),
        (["--experiment=nope.yaml", "--max_concurrent=0"], "max_concurrent must be a positive integer, got '0'"),
        (["--resume"], "--resume needs --out=FOLDER of the experiment to continue"),
        (["--resume", "--out=nowhere"], "nothing to resume in"),
    ],
)
def test_bad_input_is_one_clear_line(args, message, cli_main, tmp_path):
    code, _, err = cli_main(tmp_path, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("run_recbole_mamba.py: error: ") and message in lines[0]


def test_bad_input_from_the_script_is_one_line_exit_2(tmp_path):
    proc = run_script("--epochs=abc", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == ["run_recbole_mamba.py: error: epochs must be an integer, got 'abc'"]


def test_evaluate_prints_the_table_of_a_checkpoint_again(tiny_data_path, tmp_path, cli_main):
    code, trained, err = cli_main(tmp_path, "--dataset=ml-tiny", f"--data_path={tiny_data_path}", *TINY_ARGS)
    assert code == 0, err[-3000:]
    (checkpoint,) = [p for p in (tmp_path / "saved").glob("MambaRec-*.pth") if not p.name.endswith("-last.pth")]
    again = run_script("--evaluate", f"--checkpoint={checkpoint}", cwd=tmp_path / "saved")  # another process, folder
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.splitlines()[:5] == trained.splitlines()[:5]  # title and test table
    assert again.stdout.splitlines()[5].startswith("valid: hit@10")


def test_a_converted_dataset_is_found_by_its_short_name(tiny_data_path, tmp_path):
    folder = tmp_path / "dataset_atomics" / "kuairand-2k"
    folder.mkdir(parents=True)
    (folder / "kuairand-2k.inter").write_bytes((Path(tiny_data_path) / "ml-tiny" / "ml-tiny.inter").read_bytes())
    proc = run_script("--model=MambaRec", "--dataset=kuairand", *TINY_ARGS, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("MambaRec on kuairand-2k — test")
    assert "dataset: 'kuairand' is kuairand-2k" in proc.stderr


def test_only_input_errors_become_one_line(cli_main, monkeypatch, tmp_path):
    """A bug keeps its traceback (the exception propagates); an input error is one line, exit 2."""
    from recbole_mamba import quick_start

    def broken_run(*args, **kwargs):
        raise ValueError("a bug deep inside")

    code, _, err = cli_main(tmp_path, "--model=NoSuchModel")
    assert code == 2 and err.startswith("run_recbole_mamba.py: error: unknown model 'NoSuchModel'")
    monkeypatch.setattr(quick_start, "run", broken_run)
    with pytest.raises(ValueError, match="a bug deep inside"):
        cli_main(tmp_path, "--model=MambaRec")
