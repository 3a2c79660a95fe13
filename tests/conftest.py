"""Shared fixtures: a tiny ml-100k subset as an atomic dataset in a temporary data_path; the
command line run in this process (``cli_main``) or as a user runs it (:func:`run_script`); a
script of ``benchmarks/`` as a module (``load_benchmark``)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import recbole
import torch

if not torch.cuda.is_available():
    # the triton scan backend's kernels run in Triton's interpreter on CPU tensors; Triton reads
    # this when the kernels are defined, so before anything imports recbole_mamba.ops.scan_triton
    os.environ.setdefault("TRITON_INTERPRET", "1")

SCRIPT = Path(__file__).resolve().parents[1] / "run_recbole_mamba.py"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
ML100K = Path(recbole.__file__).parent / "dataset_example" / "ml-100k" / "ml-100k.inter"
ML100K_ITEMS = ML100K.with_suffix(".item")
TINY_USERS = 60
TINY_CONFIG = {
    "hidden_size": 16,
    "MAX_ITEM_LIST_LENGTH": 20,
    "epochs": 1,
    "train_batch_size": 256,
    "show_progress": False,
    "n_layers": 1,
    "inner_size": 32,
}


@pytest.fixture(scope="session")
def tiny_data_path(tmp_path_factory):
    """A data_path holding ``ml-tiny``: the interactions of the first 60 users of ml-100k."""
    root = tmp_path_factory.mktemp("dataset_atomics")
    folder = root / "ml-tiny"
    folder.mkdir()
    with open(ML100K) as src, open(folder / "ml-tiny.inter", "w") as dst:
        dst.write(src.readline())
        dst.writelines(line for line in src if int(line.split("\t", 1)[0]) <= TINY_USERS)
    (folder / "ml-tiny.yaml").write_text(
        "load_col:\n  inter: [user_id, item_id, rating, timestamp]\n"
    )
    return str(root)


@pytest.fixture(scope="session")
def featured_data_path(tmp_path_factory):
    """A data_path holding ``ml-tiny``: the first 20 users of ml-100k with ml-100k's item
    features (``class``, for RecBole's feature models), as RecBole's own ml-100k config loads them."""
    root = tmp_path_factory.mktemp("featured_atomics")
    folder = root / "ml-tiny"
    folder.mkdir()
    with open(ML100K) as src, open(folder / "ml-tiny.inter", "w") as dst:
        dst.write(src.readline())
        dst.writelines(line for line in src if int(line.split("\t", 1)[0]) <= 20)
    (folder / "ml-tiny.item").write_bytes(ML100K_ITEMS.read_bytes())
    (folder / "ml-tiny.yaml").write_text(
        "load_col:\n  inter: [user_id, item_id, timestamp]\n  item: [item_id, class]\n"
    )
    return str(root)


@pytest.fixture
def in_tmp_dir(tmp_path):
    """Run the test with the working directory in a temporary folder (RecBole writes log/, saved/)."""
    old = os.getcwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(old)


@pytest.fixture
def cli_main(monkeypatch, capsys):
    """``cli_main(cwd, *args)`` runs the command line in this process (no interpreter to start)
    with the working directory ``cwd``: (exit code, stdout, stderr)."""
    from recbole_mamba import cli

    monkeypatch.setattr(cli, "keep_large_allocations", lambda: None)  # not in pytest's process

    def main(cwd, *args):
        monkeypatch.chdir(cwd)
        code = cli.main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return main


@pytest.fixture(scope="session")
def load_benchmark():
    """``load_benchmark(name)``: ``benchmarks/<name>.py`` as a module (the scripts are no package)."""

    def load(name):
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


def run_script(*args, cwd, timeout=300, env=None):
    """``python run_recbole_mamba.py *args`` in a new interpreter, as a user runs it (Python's
    warnings off), in ``env`` (this process's environment by default): the finished process, its
    output captured as text."""
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**(os.environ if env is None else env), "PYTHONWARNINGS": "ignore"})
