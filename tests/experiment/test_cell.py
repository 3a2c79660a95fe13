"""How a cell's end is classified: out of memory, failed, or killed without results."""

import os
import sys
import tempfile

import pytest
import torch

from recbole_mamba.experiment.cell import execute_cell, is_out_of_memory


@pytest.mark.parametrize("error, oom", [
    (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"), True),
    (MemoryError(), True),
    (ValueError("The hidden size (16) is not a multiple of the number of attention heads (3)"), False),
])
def test_out_of_memory_errors_are_told_apart(error, oom):
    assert is_out_of_memory(error) is oom


@pytest.mark.parametrize("script, status, error", [
    ("kill -9 $$", "oom", "killed by SIGKILL (the kernel's out-of-memory killer?)"),
    ("echo dying >&2; exit 3", "failed", "the cell's process exited with status 3 and no metrics"),
])
def test_a_child_that_dies_without_metrics_is_recorded(script, status, error, tmp_path, monkeypatch):
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\necho started\n{script}\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    outcome = execute_cell("MambaRec", "ml-100k", {"epochs": 1}, ["full"], 1, f"test-{status}")
    assert outcome["metrics"] == {"status": status, "error": error}
    assert outcome["log"].startswith("started")
    assert not os.path.exists(os.path.join(tempfile.gettempdir(), "recbole-mamba-cells", f"test-{status}"))
