"""Experiment yamls: the cells they name, their configs, and one-line errors for bad ones."""

import re
from pathlib import Path

import pytest
import yaml

from recbole_mamba.config import ConfigError, properties_dir
from recbole_mamba.experiment import load_experiment, parse_experiment

STUDY_MODELS = ["GRU4Rec", "SASRec", "RecMamba", "MambaRec", "MoEMaTrRec"]
SPEC = {
    "models": ["MambaRec", "SASRec"],
    "seeds": [0, 1],
    "protocols": ["uni100", "full"],
    "settings": {"epochs": 5, "hidden_size": 32},
    "model_settings": {"SASRec": {"hidden_size": 64}},
    "datasets": [
        {"name": "kuairand", "dataset": "kuairand-{cut}", "lengths": [2000, 500], "settings": {"epochs": 7}},
        {"name": "gen", "generate": {"users": 10, "lags": [2]}, "lengths": [4]},
    ],
}


def test_cells_cover_the_grid_with_the_documented_priorities():
    experiment = parse_experiment(SPEC, "spec.yaml", overrides={"epochs": 9, "learning_rate": 0.01})
    cells = experiment.cells()
    assert [c.id for c in cells[:4]] == ["kuairand-MambaRec-2000-0", "kuairand-MambaRec-2000-1",
                                         "kuairand-SASRec-2000-0", "kuairand-SASRec-2000-1"]
    assert len(cells) == 2 * 2 * 2 + 1 * 2 * 2 and len({c.id for c in cells}) == len(cells)
    assert [c.dataset for c in cells if c.label == "kuairand"][::4] == ["kuairand-2k", "kuairand-500"]
    sasrec = next(c for c in cells if c.model == "SASRec" and c.length == 500 and c.seed == 1)
    assert sasrec.config == {"epochs": 9, "learning_rate": 0.01, "hidden_size": 64, "MAX_ITEM_LIST_LENGTH": 500,
                             "seed": 1, "eval_args": {"mode": "uni100"}}  # the first protocol selects
    mamba = next(c for c in cells if c.model == "MambaRec" and c.label == "gen")
    assert mamba.config["hidden_size"] == 32 and mamba.config["epochs"] == 9 and mamba.dataset == "gen"
    assert parse_experiment(experiment.as_dict(), "stored").as_dict() == experiment.as_dict()
    assert experiment.name == "spec"


@pytest.mark.parametrize("change, message", [
    ({"colour": 1}, "spec.yaml: top level: unknown key 'colour'"),
    ({"models": ["MambaRec", "Nope"]}, "spec.yaml: models: unknown model 'Nope'"),
    ({"seeds": [0, 0]}, "spec.yaml: seeds: has duplicates"),
    ({"seeds": "0"}, "spec.yaml: seeds: must be a non-empty list of ints"),
    ({"protocols": ["uni0"]}, "spec.yaml: protocols: 'uni0' is not full, uniN or popN"),
    ({"settings": {"seed": 3}}, "spec.yaml: settings: seed is set by the grid"),
    ({"model_settings": {"GRU4Rec": {"dropout_prob": 0.1}}}, "spec.yaml: model_settings.GRU4Rec: GRU4Rec is not in models"),
    ({"datasets": [{"name": "a", "lengths": [0]}]}, "spec.yaml: datasets[0].lengths: must be a non-empty list of ints > 0"),
    ({"datasets": [{"name": "a", "lengths": [4], "size": 1}]}, "spec.yaml: datasets[0]: unknown key 'size'"),
    ({"datasets": [{"name": "a", "lengths": [4], "generate": {"user": 5}}]},
     "spec.yaml: datasets[0].generate: unknown key 'user'"),
    ({"datasets": [{"name": "a", "lengths": [4]}, {"name": "a", "lengths": [8]}]},
     "spec.yaml: datasets: names must be distinct"),
    ({"datasets": [{"name": "a", "lengths": [4], "convert": "lfm1b x.txt --max-len=7"}]},
     "spec.yaml: datasets[0].convert: --max-len is set by the grid"),
    ({"datasets": [{"name": "a", "lengths": [4], "convert": ["lfm1b", "x.txt"]}]},
     "spec.yaml: datasets[0].convert: must be the converter's arguments (a string)"),
])
def test_a_bad_experiment_is_refused_in_one_line_naming_the_field(change, message):
    with pytest.raises(ConfigError) as error:
        parse_experiment({**SPEC, **change}, "spec.yaml")
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_files_that_are_missing_or_not_yaml(tmp_path):
    with pytest.raises(ConfigError, match=r"experiment file not found: nope.yaml \(shipped: kuairand, lfm1b, quick\)"):
        load_experiment("nope.yaml")
    assert load_experiment("quick").name == "quick"  # a shipped grid by name
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [a\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid yaml"):
        load_experiment(str(bad))


def test_the_shipped_grids_are_the_studys():
    folder = Path(properties_dir()) / "experiment"
    quick = load_experiment(str(folder / "quick.yaml"))
    assert [d.name for d in quick.datasets][0] == "ml-100k" and any(d.generate for d in quick.datasets)
    assert len(quick.seeds) >= 2
    for name, lengths in (("kuairand", [2000, 5000]), ("lfm1b", [250, 500, 1000, 2000, 5000])):
        experiment = load_experiment(str(folder / f"{name}.yaml"))
        assert experiment.models == STUDY_MODELS and len(experiment.seeds) >= 2
        assert experiment.protocols == ["uni100", "full"]  # the study's 100 negatives, plus full ranking
        (entry,) = experiment.datasets
        assert entry.lengths == lengths
        assert [entry.dataset_for(n) for n in lengths][-1] == f"{name}-5k"  # as the converters name it
    assert yaml.safe_load((folder / "quick.yaml").read_text())["datasets"]


def converter_lines(text):
    return [line for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S) for line in block.splitlines()
            if re.match(r"python -m recbole_mamba.atomics (kuairand|lfm1b) ", line)]


def test_the_docs_show_the_shipped_grids_converter_commands():
    """One source of truth: the grids' ``convert`` keys; the converters' page shows each length's
    command exactly, in order, and the README's are among them."""
    from recbole_mamba.config import shipped_conversions

    commands = shipped_conversions()
    assert list(commands) == ["kuairand-2k", "kuairand-5k", "lfm1b-250", "lfm1b-500", "lfm1b-1k", "lfm1b-2k",
                              "lfm1b-5k"]
    assert commands["kuairand-5k"] == ("python -m recbole_mamba.atomics kuairand log_standard_*.csv "
                                       "log_random_*.csv --min-item-count 5 --max-len 5003 --name kuairand-5k")
    root = Path(__file__).resolve().parents[2]
    assert converter_lines((root / "docs" / "converters.md").read_text()) == list(commands.values())
    readme = converter_lines((root / "README.md").read_text())
    assert len(readme) == 2 and set(readme) <= set(commands.values())
    for name in ("kuairand", "lfm1b"):
        (entry,) = load_experiment(name).datasets
        assert [entry.convert_command(n) for n in entry.lengths] == [c for d, c in commands.items()
                                                                     if d.startswith(name)]


def test_a_grid_without_its_converted_dataset_stops_before_it_starts(tmp_path):
    from recbole_mamba.experiment import run_experiment

    spec = {"models": ["MambaRec"], "settings": {"data_path": str(tmp_path / "data")},
            "datasets": [{"name": "k", "dataset": "k-{cut}", "convert": "kuairand log_*.csv", "lengths": [500, 2000]}]}
    (tmp_path / "data" / "k-500").mkdir(parents=True)
    (tmp_path / "data" / "k-500" / "k-500.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n")
    with pytest.raises(ConfigError) as error:
        run_experiment(parse_experiment(spec, "k.yaml"), out=str(tmp_path / "out"))
    assert str(error.value) == (
        f"k-2k is not in {tmp_path / 'data'}: convert the raw dump first: python -m recbole_mamba.atomics kuairand "
        f"log_*.csv --max-len 2003 --name k-2k --output-dir {tmp_path / 'data'}")
    assert not (tmp_path / "out").exists()
