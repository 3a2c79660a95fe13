"""Ray Tune hyper-parameter search over the plugin's pipeline."""

from recbole_mamba.tune.space import Param, SpaceError, load_space, parse_hyper_file, parse_yaml_space

__all__ = ["Param", "SpaceError", "load_space", "parse_hyper_file", "parse_yaml_space"]
