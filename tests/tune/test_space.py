"""Search-space files: yaml and RecBole's hyper syntax agree, and bad definitions fail early."""

import math
from pathlib import Path

import pytest
import yaml

from recbole_mamba.tune.space import (Param, SpaceError, load_space, parse_hyper_file, parse_yaml_space, to_ray,
                                      trial_points)

YAML = """
learning_rate: {loguniform: [0.0003354626279025119, 1.0]}
dropout_prob: {uniform: [0.1, 0.5]}
n_layers: {choice: [1, 2, 3]}
d_state: {quniform: [8, 64, 8]}
"""
HYPER = """
learning_rate loguniform -8,0   # hyperopt style: natural-log bounds
dropout_prob uniform 0.1,0.5
n_layers choice [1,2,3]
d_state quniform 8,64,8
"""


def test_yaml_and_recbole_hyper_file_agree():
    from_yaml = parse_yaml_space(YAML)
    from_hyper = parse_hyper_file(HYPER)
    assert [p.name for p in from_yaml] == [p.name for p in from_hyper]
    for a, b in zip(from_yaml, from_hyper):
        assert a.kind == b.kind
        assert all(math.isclose(x, y) if isinstance(x, float) else x == y for x, y in zip(a.args, b.args))
    lr_yaml, lr_hyper = to_ray(from_yaml)["learning_rate"], to_ray(from_hyper)["learning_rate"]
    assert math.isclose(lr_yaml.lower, lr_hyper.lower) and math.isclose(lr_yaml.upper, lr_hyper.upper)
    assert math.isclose(lr_hyper.lower, math.exp(-8))


def test_all_kinds_become_ray_domains():
    params = parse_yaml_space(
        "a: {choice: [x, y]}\nb: {grid: [1, 2]}\nc: {uniform: [0, 1]}\n"
        "d: {loguniform: [1.0e-4, 1.0e-2]}\ne: {randint: [1, 5]}\nf: {quniform: [2, 10, 2]}\n"
    )
    space = to_ray(params)
    assert space["b"] == {"grid_search": [1, 2]}
    assert space["e"].lower == 1 and space["e"].upper == 5
    assert Param("a", "choice", ("x", "y")) in params


def test_shipped_spaces_parse():
    from recbole_mamba.config import properties_dir
    from recbole_mamba.registry import get_model

    files = sorted((properties_dir() / "tune").glob("*.yaml"))
    assert {f.stem for f in files} >= {"MambaRec", "RecMamba", "MoEMaTrRec", "SASRec", "GRU4Rec"}
    for path in files:
        get_model(path.stem)
        assert load_space(str(path))


def test_trial_lists_fix_each_trial_column_wise():
    params = parse_yaml_space("lr: {trial: [0.001, 0.003, 0.001]}\nbatch: {trial: [64, 64, 32]}\n")
    assert trial_points(params) == [{"lr": 0.001, "batch": 64}, {"lr": 0.003, "batch": 64},
                                    {"lr": 0.001, "batch": 32}]
    space = to_ray(params)
    assert space["lr"].categories == [0.001, 0.003] and space["batch"].categories == [64, 32]
    assert parse_hyper_file("lr trial 0.001,0.003\nbatch trial 64,32\n") == [
        Param("lr", "trial", (0.001, 0.003)), Param("batch", "trial", (64, 32))]
    assert trial_points(parse_yaml_space("lr: {grid: [0.001]}")) == []


@pytest.mark.parametrize("text,message", [
    ("a: {trial: [1, 2]}\nb: {trial: [1, 2, 3]}", "space.yaml: every 'trial' list needs one value per trial, "
                                                  "got lengths a 2, b 3"),
    ("a: {trial: [1, 2]}\nb: {grid: [1, 2]}", "space.yaml: 'trial' lists fix every trial; they mix with no "
                                              r"other kind \(b\)"),
    ("a: {trial: []}", "trial needs a non-empty list"),
    ("lr: {lognormal: [1, 2]}", "unknown kind 'lognormal'"),
    ("lr: {uniform: [0.5, 0.1]}", "needs low < high"),
    ("lr: {loguniform: [0, 1]}", "loguniform needs low > 0"),
    ("lr: {uniform: [0.1]}", "needs 2 numbers"),
    ("lr: {choice: []}", "non-empty list"),
    ("lr: 0.1", "expected one {kind: values}"),
    ("- a\n- b", "expected a mapping"),
    ("lr: {quniform: [1, 9, 2]}", "q > 0 dividing low and high"),
])
def test_bad_yaml_spaces(text, message):
    with pytest.raises(SpaceError, match=message):
        parse_yaml_space(text, "space.yaml")


def test_bad_hyper_line_names_file_and_line():
    with pytest.raises(SpaceError, match="hyper.txt line 2: expected 'name kind values'"):
        parse_hyper_file("lr uniform 0.1,0.2\nbroken\n", "hyper.txt")
    with pytest.raises(SpaceError, match="hyper.txt line 1: cannot read values"):
        parse_hyper_file("lr choice [1,\n", "hyper.txt")


def test_a_space_of_grids_runs_each_point_once_by_default(tmp_path):
    from recbole_mamba.tune.search import default_num_samples

    grid = tmp_path / "grid.yaml"
    grid.write_text("learning_rate: {grid: [0.001, 0.003]}\nloss_type: {grid: [CE]}\n")
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text("learning_rate: {grid: [0.001, 0.003]}\ndropout_prob: {uniform: [0.1, 0.5]}\n")
    assert default_num_samples(load_space(str(grid))) == 1
    assert default_num_samples(load_space(str(mixed))) == 8
    trials = tmp_path / "trials.yaml"
    trials.write_text("learning_rate: {trial: [0.001, 0.003, 0.01]}\n")
    assert default_num_samples(load_space(str(trials))) == 3


def test_the_comparison_search_is_the_same_for_every_model():
    """properties/tune/ml-100k: one 2^(4-1) design (D = -ABC) over learning rate, dropout (every
    dropout the model has), weight decay and tokens per batch, trial by trial the same."""
    from recbole_mamba.config import properties_dir

    def model_defaults(model):
        import recbole
        for folder in (properties_dir() / "model", Path(recbole.__file__).parent / "properties" / "model"):
            if (folder / f"{model}.yaml").exists():
                return yaml.safe_load((folder / f"{model}.yaml").read_text())

    dropouts = {"MambaRec": ["dropout_prob"], "RecMamba": ["dropout_prob"], "GRU4Rec": ["dropout_prob"],
                "SASRec": ["hidden_dropout_prob", "attn_dropout_prob"],
                "MoEMaTrRec": ["hidden_dropout_prob", "attn_dropout_prob"]}
    files = sorted((properties_dir() / "tune" / "ml-100k").glob("*.yaml"))
    assert {f.stem for f in files} == set(dropouts)
    designs = {}
    for path in files:
        points = trial_points(load_space(str(path)))
        names = dropouts[path.stem]
        assert all({p[n] for n in names} == {p[names[0]]} for p in points), path.stem  # dropouts move together
        designs[path.stem] = [(p["learning_rate"], p[names[0]], p["weight_decay"], p["train_batch_tokens"])
                              for p in points]
        assert set(points[0]) == {"learning_rate", "weight_decay", "train_batch_tokens", *names}
        assert all(n in model_defaults(path.stem) for n in names), path.stem
    first = designs.pop("MambaRec")
    assert all(design == first for design in designs.values())
    levels = [sorted({trial[i] for trial in first}) for i in range(4)]
    assert all(len(level) == 2 for level in levels) and len(set(first)) == 8
    signs = [[1 if trial[i] == levels[i][-1] else -1 for i in range(4)] for trial in first]
    assert all(a * b * c * d == -1 for a, b, c, d in signs)  # D = -ABC
    for i in range(4):  # balanced: each level of each factor in half of the trials
        assert sum(s[i] for s in signs) == 0
