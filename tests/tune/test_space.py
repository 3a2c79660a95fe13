"""Search-space files: yaml and RecBole's hyper syntax agree, and bad definitions fail early."""

import math

import pytest

from recbole_mamba.tune.space import Param, SpaceError, load_space, parse_hyper_file, parse_yaml_space, to_ray

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


@pytest.mark.parametrize("text,message", [
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
