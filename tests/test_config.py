"""Config merging, model registry, and use of plugin models through plain RecBole."""

import pytest
from recbole.config import Config

from recbole_mamba.config import ConfigError, RecboleMambaConfig, model_config_file, parse_cmd_args
from recbole_mamba.model import MambaRec
from recbole_mamba.registry import UnknownModelError, get_model


def test_registry_finds_plugin_and_recbole_models():
    from recbole.model.sequential_recommender import GRU4Rec, SASRec

    assert get_model("MambaRec") is MambaRec
    assert get_model("SASRec") is SASRec and get_model("GRU4Rec") is GRU4Rec
    with pytest.raises(UnknownModelError, match="MambaRec.*SASRec"):
        get_model("Mambarec")
    with pytest.raises(UnknownModelError):
        get_model("BPR")  # a RecBole model, but not a sequential one


def test_merge_order(tiny_data_path, tmp_path):
    # model yaml: hidden_size 64, dropout_prob 0.2; dataset yaml (converter's) sets dropout_prob
    ds_yaml = f"{tiny_data_path}/ml-tiny/ml-tiny.yaml"
    original = open(ds_yaml).read()
    try:
        with open(ds_yaml, "a") as f:
            f.write("dropout_prob: 0.3\nn_layers: 3\nd_state: 8\n")
        user = tmp_path / "user.yaml"
        user.write_text("n_layers: 2\nd_state: 4\n")
        config = RecboleMambaConfig(
            "MambaRec", "ml-tiny", config_file_list=[str(user)],
            config_dict={"data_path": tiny_data_path}, cmd_args=["--d_state=2"],
        )
    finally:
        open(ds_yaml, "w").write(original)
    assert config["hidden_size"] == 64  # model yaml
    assert config["dropout_prob"] == 0.3  # dataset yaml over model yaml
    assert config["n_layers"] == 2  # user file over dataset yaml
    assert config["d_state"] == 2  # command line over everything
    assert config["mamba_backend"] == "auto"  # plugin defaults
    assert config["data_path"].endswith("ml-tiny")


def test_library_config_ignores_sys_argv(monkeypatch, tiny_data_path):
    monkeypatch.setattr("sys.argv", ["pytest", "--hidden_size=999", "not-an-arg"])
    config = RecboleMambaConfig("MambaRec", "ml-tiny", config_dict={"data_path": tiny_data_path})
    assert config["hidden_size"] == 64


def test_parse_cmd_args():
    assert parse_cmd_args(["--a=1", "--b=x=y"]) == {"a": "1", "b": "x=y"}
    for bad in (["a=1"], ["--a"], ["--=1"], ["--a=1", "--a=2"]):
        with pytest.raises(ConfigError):
            parse_cmd_args(bad)


def test_unknown_dataset_lists_choices(tiny_data_path):
    with pytest.raises(ConfigError, match="available: ml-100k, ml-tiny"):
        RecboleMambaConfig("MambaRec", "ml-1m", config_dict={"data_path": tiny_data_path})


def test_plain_recbole_config_with_plugin_model(monkeypatch):
    monkeypatch.setattr("sys.argv", ["pytest"])
    config = Config(model=MambaRec, dataset="ml-100k", config_file_list=[model_config_file("MambaRec")])
    assert config["model"] == "MambaRec" and config["d_state"] == 32


def test_partial_eval_args_keep_the_leave_one_out_split(tiny_data_path):
    config = RecboleMambaConfig("MambaRec", "ml-tiny", config_dict={"data_path": tiny_data_path},
                                cmd_args=["--eval_args={'mode': 'uni100'}"])
    assert config["eval_args"]["split"] == {"LS": "valid_and_test"}
    assert config["eval_args"]["order"] == "TO"
    assert config["eval_args"]["mode"] == {"valid": "uni100", "test": "uni100"}
