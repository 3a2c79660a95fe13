"""Every model the command line offers trains one tiny epoch through the user's pipeline
(``quick_start.run``, which the CLI calls), and the RecBole models it does not run are refused
with the reason."""

import pytest
from recbole.trainer import Trainer
from recbole.utils import get_trainer

from recbole_mamba.config import RecboleMambaConfig
from recbole_mamba.quick_start import run
from recbole_mamba.registry import (
    REFUSED,
    UnsupportedModelError,
    model_names,
    recbole_sequential_models,
)

PLUGIN, RECBOLE = model_names()
SMOKE = {"MAX_ITEM_LIST_LENGTH": 10, "epochs": 1, "show_progress": False, "state": "WARNING"}


@pytest.mark.parametrize("name", PLUGIN + RECBOLE)
def test_trains_one_tiny_epoch(name, featured_data_path, in_tmp_dir):
    result = run(name, "ml-tiny", config_dict={**SMOKE, "data_path": featured_data_path}, saved=False)
    assert set(result["test_result"]) == {f"{m}@{k}" for m in ("hit", "ndcg", "mrr") for k in (10, 20)}
    assert all(0 <= value <= 1 for value in result["test_result"].values())
    assert result["epochs_run"] == 1


def test_offered_models_use_recbole_s_plain_trainer():
    """The plugin trains every model with its Trainer subclass: RecBole must agree."""
    models = recbole_sequential_models()
    for name in RECBOLE:
        assert get_trainer(models[name].type, name) is Trainer, name


@pytest.mark.parametrize("name, reason", [
    ("S3Rec", "it needs RecBole's S3RecTrainer, which the plugin does not run"),
    *sorted(REFUSED.items()),
])
def test_refused_models_say_why(name, reason, tiny_data_path):
    assert name not in RECBOLE
    with pytest.raises(UnsupportedModelError) as error:
        RecboleMambaConfig(name, "ml-tiny", config_dict={"data_path": tiny_data_path})
    assert str(error.value) == (f"model {name!r} is not supported by recbole-mamba: {reason}; "
                                "run it with RecBole's own run_recbole")


def test_every_recbole_sequential_model_is_offered_or_refused():
    assert set(recbole_sequential_models()) == set(RECBOLE) | set(REFUSED) | {"S3Rec"}
