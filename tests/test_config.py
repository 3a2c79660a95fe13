"""Config merging, model registry, and use of plugin models through plain RecBole."""

from pathlib import Path

import pytest
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation

from recbole_mamba.config import (
    CHOICES,
    ConfigError,
    RecboleMambaConfig,
    model_config_file,
    parse_cmd_args,
    plugin_config_files,
)
from recbole_mamba.model import MambaRec
from recbole_mamba.registry import UnknownModelError, get_model, recbole_sequential_models


def test_registry_finds_plugin_and_recbole_models():
    GRU4Rec, SASRec = recbole_sequential_models()["GRU4Rec"], recbole_sequential_models()["SASRec"]

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


@pytest.mark.parametrize("name", ["MambaRec", "RecMamba", "MoEMaTrRec"])
def test_plugin_model_builds_in_plain_recbole_from_its_own_yaml(name, monkeypatch, tiny_data_path):
    """Plain RecBole's Config with nothing but the model's yaml (and where the data is): every key
    the model reads is there, and the model trains on RecBole's dataloaders."""
    monkeypatch.setattr("sys.argv", ["pytest"])
    model_class = get_model(name)
    config = Config(model=model_class, dataset="ml-tiny", config_file_list=[model_config_file(name)],
                    config_dict={"data_path": tiny_data_path, "MAX_ITEM_LIST_LENGTH": 20, "loss_type": "CE",
                                 "load_col": {"inter": ["user_id", "item_id", "timestamp"]}})
    train, _, _ = data_preparation(config, create_dataset(config))
    model = model_class(config, train._dataset)
    batch = next(iter(train))
    output = model.forward(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
    assert output.shape == (len(batch), config["hidden_size"])
    assert torch.isfinite(model.calculate_loss(batch))


def test_plugin_config_files_are_overall_then_model():
    files = plugin_config_files("RecMamba")
    assert [Path(f).name for f in files] == ["overall.yaml", "RecMamba.yaml"]
    assert all(Path(f).is_file() for f in files)


@pytest.mark.parametrize("args, message", [
    (["--epochs=abc"], "epochs must be an integer, got 'abc'"),
    (["--epochs=1.5"], "epochs must be an integer, got 1.5"),
    (["--learning_rate=fast"], "learning_rate must be a number, got 'fast'"),
    (["--show_progress=1"], "show_progress must be a boolean (True or False), got 1"),
    (["--eval_args=full"], "eval_args must be a dict, got 'full'"),
    (["--mamba_backend=gpu"], "mamba_backend must be one of auto, cuda, triton, cpu, torch, ref; got 'gpu'"),
    (["--train_mode=all"], "train_mode must be one of auto, prefix, all_positions; got 'all'"),
])
def test_values_are_checked_against_their_defaults_type(args, message, tiny_data_path):
    with pytest.raises(ConfigError) as error:
        RecboleMambaConfig("MambaRec", "ml-tiny", config_dict={"data_path": tiny_data_path}, cmd_args=args)
    assert str(error.value) == message


def test_every_checked_choice_is_refused_naming_its_values_and_listed_in_the_usage_page(tiny_data_path):
    usage = (Path(__file__).resolve().parents[1] / "docs" / "usage.md").read_text()
    for key, choices in CHOICES.items():
        assert f"`{key}`" in usage.split("Datasets other than the embedded")[0], key
        with pytest.raises(ConfigError) as error:
            RecboleMambaConfig("MambaRec", "ml-tiny", config_dict={"data_path": tiny_data_path},
                               cmd_args=[f"--{key}=nonsense"])
        assert str(error.value) == f"{key} must be one of {', '.join(choices)}; got 'nonsense'"


def test_values_of_the_right_type_pass(tiny_data_path):
    config = RecboleMambaConfig("MambaRec", "ml-tiny", config_dict={"data_path": tiny_data_path}, cmd_args=[
        "--learning_rate=1", "--topk=10", "--metrics=NDCG", "--gpu_id=0", "--show_progress=false"])
    assert config["learning_rate"] == 1 and config["topk"] == [10] and config["show_progress"] is False



@pytest.mark.parametrize("key", ["nproc", "world_size", "ip", "port", "offset", "local_rank"])
def test_launch_keys_are_no_part_of_a_runs_config(key, tiny_data_path):
    with pytest.raises(ConfigError, match=f"^{key} is an option of a launch, not of a run's config: give --nproc=N"):
        RecboleMambaConfig("MambaRec", "ml-tiny", config_dict={"data_path": tiny_data_path, key: 2})


def test_a_checkpoint_of_an_older_run_that_stored_launch_keys_rebuilds_without_them():
    from recbole_mamba.trainer.checkpoint import checkpoint_parameters

    stored = {"parameters_json": '{"epochs": 3, "nproc": 2, "world_size": 2, "local_rank": 0, "port": "5678"}'}
    assert checkpoint_parameters("x.pth", stored) == {"epochs": 3}

def make_dataset(data_path, name, header, rows=(), yaml=None):
    folder = Path(data_path) / name
    folder.mkdir(parents=True)
    (folder / f"{name}.inter").write_text(header + "\n" + "".join(r + "\n" for r in rows))
    if yaml is not None:
        (folder / f"{name}.yaml").write_text(yaml)
    return folder


def test_a_name_resolves_to_the_one_converted_dataset_it_prefixes(tmp_path):
    make_dataset(tmp_path, "kuairand-2k", "user_id:token\titem_id:token\ttimestamp:float")
    config = RecboleMambaConfig("MambaRec", "kuairand", config_dict={"data_path": str(tmp_path)})
    assert config["dataset"] == "kuairand-2k" and config.dataset_requested == "kuairand"
    assert config["data_path"] == str(tmp_path / "kuairand-2k")
    make_dataset(tmp_path, "kuairand-5k", "user_id:token\titem_id:token\ttimestamp:float")
    with pytest.raises(ConfigError, match="'kuairand' could be any of kuairand-2k, kuairand-5k"):
        RecboleMambaConfig("MambaRec", "kuairand", config_dict={"data_path": str(tmp_path)})


@pytest.mark.parametrize("name, how", [
    ("kuairand", "make it with: python -m recbole_mamba.atomics kuairand log_standard_*.csv log_random_*.csv "
                 "--min-item-count 5 --max-len 2003 --name kuairand-2k"),
    ("lfm1b-1k", "make it with: python -m recbole_mamba.atomics lfm1b LFM-1b.zip --min-item-count 5 --max-len 1003 "
                 "--name lfm1b-1k"),
    ("my-data", "put RecBole atomic files there (my-data.inter with a header such as"),
])
def test_unknown_dataset_says_where_it_looked_and_how_to_make_it(name, how, tmp_path):
    with pytest.raises(ConfigError) as error:
        RecboleMambaConfig("MambaRec", name, config_dict={"data_path": str(tmp_path)})
    message = str(error.value)
    assert f"no {name}.inter in {tmp_path / name}" in message and how in message
    if name != "my-data":  # not the default data_path: the command writes where it looked
        assert f"--output-dir {tmp_path}" in message


def test_a_plain_atomic_dataset_without_yaml_loads_its_time_field(tmp_path):
    rows = [f"{u}\t{i}\t{t}" for u in (1, 2, 3) for t, i in enumerate(range(1 + u, 9 + u))]
    make_dataset(tmp_path, "foo", "user_id:token\titem_id:token\ttimestamp:float", rows)
    config = RecboleMambaConfig("MambaRec", "foo", config_dict={"data_path": str(tmp_path)})
    assert config["load_col"] == {"inter": ["user_id", "item_id", "timestamp"]}
    train, valid, test = data_preparation(config, create_dataset(config))
    assert len(test._dataset) == 3


def test_a_dataset_without_time_field_says_which_file_and_how_to_fix_it(tmp_path):
    folder = make_dataset(tmp_path, "foo", "user_id:token\titem_id:token", ["1\t2"])
    with pytest.raises(ConfigError) as error:
        RecboleMambaConfig("MambaRec", "foo", config_dict={"data_path": str(tmp_path)})
    assert str(error.value).startswith(
        f"{folder / 'foo.inter'} has no 'timestamp' column (its columns: user_id, item_id); ")
    assert "add a timestamp:float column" in str(error.value) and "--TIME_FIELD=<column>" in str(error.value)


def test_partial_eval_args_keep_the_leave_one_out_split(tiny_data_path):
    config = RecboleMambaConfig("MambaRec", "ml-tiny", config_dict={"data_path": tiny_data_path},
                                cmd_args=["--eval_args={'mode': 'uni100'}"])
    assert config["eval_args"]["split"] == {"LS": "valid_and_test"}
    assert config["eval_args"]["order"] == "TO"
    assert config["eval_args"]["mode"] == {"valid": "uni100", "test": "uni100"}


TUNED = sorted((Path(__file__).resolve().parents[1] / "properties" / "tuned").glob("*/*.yaml"))


@pytest.mark.parametrize("path", TUNED, ids=[f"{p.parent.name}-{p.stem}" for p in TUNED])
def test_tuned_settings_apply_to_their_model_and_dataset_only(path):
    import yaml

    dataset, model = path.parent.name, path.stem
    tuned = yaml.safe_load(path.read_text())
    text = path.read_text()
    assert "python run_recbole_mamba.py --tune" in text and "--params_file=" in text  # how they were found
    config = RecboleMambaConfig(model, dataset)
    assert {key: config[key] for key in tuned} == tuned
    key, value = next(iter(tuned.items()))
    given = value * 2 if isinstance(value, (int, float)) else value
    assert RecboleMambaConfig(model, dataset, config_dict={key: given})[key] == given  # the user's value wins


def test_tuned_settings_are_merged_after_the_dataset_and_only_for_their_model(tiny_data_path, tmp_path,
                                                                             monkeypatch):
    from recbole_mamba import config as config_module

    real = config_module.properties_dir()
    props = tmp_path / "properties"
    (props / "tuned" / "ml-tiny").mkdir(parents=True)
    for sub in ("overall.yaml", "model", "dataset"):
        (props / sub).symlink_to(real / sub)
    (props / "tuned" / "ml-tiny" / "MambaRec.yaml").write_text("d_state: 4\nlearning_rate: 0.0042\n")
    monkeypatch.setattr(config_module, "properties_dir", lambda: props)
    mamba = RecboleMambaConfig("MambaRec", "ml-tiny", config_dict={"data_path": tiny_data_path})
    gru = RecboleMambaConfig("GRU4Rec", "ml-tiny", config_dict={"data_path": tiny_data_path})
    assert mamba["d_state"] == 4 and mamba["learning_rate"] == 0.0042
    assert gru["learning_rate"] == 0.001


def test_tuned_files_exist_for_the_comparison():
    assert {p.stem for p in TUNED if p.parent.name == "ml-100k"} == {
        "MambaRec", "SASRec", "GRU4Rec", "RecMamba", "MoEMaTrRec"}
