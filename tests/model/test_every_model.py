"""Every model the command line offers trains one tiny epoch through the user's pipeline
(``quick_start.run``, which the CLI calls), refuses an option it cannot take in one line, and the
RecBole models it does not run are refused with the reason."""

import re

import pytest
from recbole.data import data_preparation
from recbole.trainer import Trainer
from recbole.utils import get_trainer

from recbole_mamba.config import ConfigError, RecboleMambaConfig
from recbole_mamba.data import create_dataset
from recbole_mamba.quick_start import run
from recbole_mamba.registry import (
    REFUSED,
    UnsupportedModelError,
    model_names,
    recbole_sequential_models,
)
from recbole_mamba.trainer.all_positions import build_model

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


READ_NO_LOSS_TYPE = {"RepeatNet", "TransRec"}  # RecBole's constructors that take any loss_type


def build(name, data_path, **overrides):
    config = RecboleMambaConfig(name, "ml-tiny", config_dict={**SMOKE, "data_path": data_path, **overrides})
    train, _, _ = data_preparation(config, create_dataset(config))
    return build_model(config.model_class, config, train._dataset)


@pytest.mark.parametrize("name", PLUGIN + RECBOLE)
def test_an_option_a_model_refuses_is_one_line_naming_model_option_and_values(name, featured_data_path):
    if name in READ_NO_LOSS_TYPE:
        assert build(name, featured_data_path, loss_type="XYZ", train_mode="prefix") is not None
        return
    with pytest.raises(ConfigError) as error:
        build(name, featured_data_path, loss_type="XYZ", train_mode="prefix")
    assert re.fullmatch(rf"{name} takes loss_type [A-Z]+( \| [A-Z]+)*; got 'XYZ'", str(error.value))


def test_a_refusal_recbole_words_wrongly_names_the_option_refused(featured_data_path):
    with pytest.raises(ConfigError, match=r"^HGN takes pooling_type max \| average; got 'sum'$"):
        build("HGN", featured_data_path, pooling_type="sum", train_mode="prefix")  # RecBole says 'loss_type'


def test_the_command_line_refuses_in_one_line_exit_2(featured_data_path, cli_main, tmp_path):
    code, out, err = cli_main(tmp_path, "--model=BERT4Rec", "--dataset=ml-tiny", f"--data_path={featured_data_path}",
                              "--loss_type=SSM", "--MAX_ITEM_LIST_LENGTH=10")
    assert code == 2 and out == ""
    assert err == "run_recbole_mamba.py: error: BERT4Rec takes loss_type BPR | CE; got 'SSM'\n"
