"""The test stage holds the best weights once: a checkpoint's large tensors are copied from the
file's mapping a chunk at a time and each chunk's pages dropped from the process, and the
optimizer's state is let go before the test loads them."""

import os

import pytest
import torch

from recbole_mamba.trainer import checkpoint as checkpoint_module
from recbole_mamba.trainer.checkpoint import copy_from_mapped, load_checkpoint, save_checkpoint


def mapped_rss(path):
    """This process's resident bytes of the mappings of file ``path``."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            if not line[0].isupper() or "-" in line.split()[0]:  # a mapping's header line
                inside = line.rstrip().endswith(str(path))
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1]) * 1024
    return total


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="reads Linux's /proc")
def test_a_mapped_tensor_is_copied_without_staying_resident(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint_module, "RELEASE_CHUNK_BYTES", 1 << 20)
    table = torch.randn(32_768, 64)  # 8 MiB
    path = tmp_path / "best.pth"
    save_checkpoint(str(path), state_dict={"table": table})
    for release in (False, True):
        source = load_checkpoint(str(path))["state_dict"]["table"]
        destination = torch.empty_like(table)
        if release:
            copy_from_mapped(destination, source)
        else:
            destination.copy_(source)
        assert torch.equal(destination, table)
        resident = mapped_rss(path)
        assert resident > 7 << 20 if not release else resident <= (1 << 20) + (64 << 10), resident
        del source


def test_the_best_weights_load_exactly_and_the_optimizer_goes_before_the_test(tiny_data_path, in_tmp_dir,
                                                                                 monkeypatch):
    from recbole_mamba.quick_start import run
    from recbole_mamba.trainer import trainer as trainer_module
    from tests.conftest import TINY_CONFIG

    monkeypatch.setattr(trainer_module, "RELEASE_CHUNK_BYTES", 1024)  # every tensor of the tiny model
    monkeypatch.setattr(checkpoint_module, "RELEASE_CHUNK_BYTES", 1024)
    seen = {}
    evaluate = trainer_module.SafeCheckpointTrainer.evaluate

    def checked(self, eval_data, load_best_model=True, **kwargs):
        if load_best_model:
            seen["optimizer"] = self.optimizer
        result = evaluate(self, eval_data, load_best_model=load_best_model, **kwargs)
        if load_best_model:
            seen["weights"] = {k: v.clone() for k, v in self.model.state_dict().items()}
        return result

    monkeypatch.setattr(trainer_module.SafeCheckpointTrainer, "evaluate", checked)
    result = run("MambaRec", "ml-tiny", config_dict={**TINY_CONFIG, "data_path": tiny_data_path, "epochs": 2,
                                                     "show_progress": False})
    best = load_checkpoint(result["checkpoint"])["state_dict"]
    assert seen["optimizer"] is None
    assert seen["weights"].keys() == best.keys()
    assert all(torch.equal(seen["weights"][key], best[key]) for key in best)
