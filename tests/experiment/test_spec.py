"""Experiment yamls: the cells they name, their configs, and one-line errors for bad ones."""

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
