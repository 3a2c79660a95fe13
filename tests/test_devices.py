"""Devices as a launcher or the user chose them (RecBole 1.2.1 writes its default gpu_id '0' into
CUDA_VISIBLE_DEVICES on every run): a launcher's CUDA_VISIBLE_DEVICES (Ray's trial, a rank's) is
kept, an unset one stays unset, a given gpu_id keeps RecBole's meaning, use_gpu False is the CPU.
CUDA is mocked where the machine has none: the config only reads counts and builds device names."""

import os

import pytest
import torch

from recbole_mamba.config import RecboleMambaConfig


@pytest.fixture(params=[False, True], ids=["no GPU", "2 GPUs (mocked)"])
def gpus(request, monkeypatch):
    if request.param:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    return request.param


def config(data_path, **given):
    return RecboleMambaConfig("MambaRec", "ml-tiny", config_dict={"data_path": data_path, **given})


@pytest.mark.parametrize("visible", ["1", "2,3", ""])
def test_a_launchers_visible_devices_are_kept(visible, gpus, tiny_data_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)  # as Ray sets it for a trial given GPU 1
    made = config(tiny_data_path)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == visible
    assert made["gpu_id"] == visible
    assert made["device"].type == ("cuda" if gpus and visible else "cpu")


def test_unset_visible_devices_stay_unset_and_every_gpu_is_used(gpus, tiny_data_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    made = config(tiny_data_path)
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert made["gpu_id"] == ("0,1" if gpus else "")
    assert made["device"].type == ("cuda" if gpus else "cpu")


def test_a_given_gpu_id_keeps_recboles_meaning(gpus, tiny_data_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    made = config(tiny_data_path, gpu_id="2")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2"
    assert made["device"].type == ("cuda" if gpus else "cpu")


def test_use_gpu_false_trains_on_the_cpu(gpus, tiny_data_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    made = config(tiny_data_path, use_gpu=False)
    assert made["device"] == torch.device("cpu")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"


def test_the_gpu_checks_device_runs_report_the_device_and_the_variable_after():
    """benchmarks/gpu_check.py --devices on a GPU box reads each run's device this way; here, on
    the CPU, the child must run and report what it trained on and the variable it left."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    assert gpu_check.device_run({"use_gpu": False}, "1") == {"uuid": "cpu", "visible": "1"}
