"""Checkpoint names never collide: two runs of one model in one folder, in one second, get two files."""

from recbole.data import data_preparation

from recbole_mamba.config import RecboleMambaConfig
from recbole_mamba.data import create_dataset
from recbole_mamba.trainer import SafeCheckpointTrainer, trainer as trainer_module
from recbole_mamba.trainer.all_positions import build_model
from tests.conftest import TINY_CONFIG


def test_two_trainers_of_one_model_in_one_second_name_two_files(tiny_data_path, in_tmp_dir, monkeypatch):
    monkeypatch.setattr(trainer_module, "get_local_time", lambda: "Dec-05-2026_07-00-00")  # the same second
    config = RecboleMambaConfig("MambaRec", "ml-tiny", config_dict={**TINY_CONFIG, "data_path": tiny_data_path})
    train, _, _ = data_preparation(config, create_dataset(config))
    names = []
    for _ in range(2):
        trainer = SafeCheckpointTrainer(config, build_model(config.model_class, config, train._dataset))
        trainer._save_checkpoint(0, verbose=False)
        names.append(trainer.saved_model_file)
    assert names[0] != names[1]
    assert all(name.startswith("saved/MambaRec-Dec-05-2026_07-00-00-") for name in names)
    assert sorted(path.name for path in (in_tmp_dir / "saved").iterdir()) == sorted(n.split("/")[1] for n in names)
