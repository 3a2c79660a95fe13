"""RecBole's Config, extended with the plugin's yaml defaults, model registry and data path.

Merge order (later wins), as RecBole's own: RecBole's defaults < plugin defaults
(``properties/overall.yaml``) < model yaml (``properties/model/<Model>.yaml``) < dataset yaml
(``properties/dataset/<dataset>.yaml``, then ``<data_path>/<dataset>/<dataset>.yaml`` written by the
converters) < user config files < config dict < command-line ``--key=value``.
"""

import os
from pathlib import Path

from recbole.config import Config
from recbole.utils import InputType

from recbole_mamba.registry import get_model

SAMPLED_LOSSES = ("BPR", "BCE")  # losses trained on a positive and sampled negatives
TRAIN_MODES = ("prefix", "all_positions")
ALL_POSITIONS_ABOVE = 200  # train_mode auto: all_positions when MAX_ITEM_LIST_LENGTH is longer
EMBEDDED_DATASET = "ml-100k"  # ships inside the recbole wheel (recbole/dataset_example/ml-100k)


class ConfigError(ValueError):
    """A configuration that cannot work, with a message that says how to fix it."""


def properties_dir():
    """The folder of the plugin's yaml defaults: inside the installed package (wheel) or at the
    root of a source checkout (editable install)."""
    here = Path(__file__).resolve().parent
    installed = here / "properties"
    return installed if installed.is_dir() else here.parent / "properties"


def model_config_file(model_name):
    """Path of a plugin model's yaml defaults, for use with plain RecBole's ``Config``."""
    path = properties_dir() / "model" / f"{model_name}.yaml"
    if not path.is_file():
        raise ConfigError(f"no plugin defaults for model {model_name!r} (looked for {path})")
    return str(path)


def default_data_path():
    """RecBole ``data_path`` of the plugin: ``dataset_atomics/`` in the working directory."""
    return os.path.abspath("dataset_atomics")


def available_datasets(data_path=None):
    """Names of the datasets that can be run: the embedded one and every folder of
    ``data_path`` that holds ``<name>/<name>.inter``."""
    data_path = data_path or default_data_path()
    names = {EMBEDDED_DATASET}
    if os.path.isdir(data_path):
        names.update(
            name
            for name in os.listdir(data_path)
            if os.path.isfile(os.path.join(data_path, name, f"{name}.inter"))
        )
    return sorted(names)


def parse_cmd_args(args):
    """``['--key=value', ...]`` -> {key: str value}, as RecBole's ``run_recbole.py`` reads them."""
    parsed = {}
    for arg in args:
        key, sep, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if not key or not sep:
            raise ConfigError(f"malformed argument {arg!r}: expected --key=value")
        if key in parsed and parsed[key] != value:
            raise ConfigError(f"argument --{key} given twice with different values")
        parsed[key] = value
    return parsed


class RecboleMambaConfig(Config):
    """``Config(model, dataset, config_file_list, config_dict, cmd_args)``.

    Unlike RecBole's Config, command-line overrides come from ``cmd_args`` (a list of
    ``--key=value`` strings) rather than from ``sys.argv``, so the library API never reads the
    caller's command line. ``model`` may be a name (plugin or RecBole model) or a class.
    """

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None, cmd_args=()):
        self._cmd_args = list(cmd_args)
        super().__init__(model, dataset, config_file_list, config_dict)

    def _load_cmd_line(self):
        return self._convert_config_dict(parse_cmd_args(self._cmd_args))

    def _get_model_and_dataset(self, model, dataset):
        model = model if model is not None else self.external_config_dict.get("model")
        if isinstance(model, str):
            model = get_model(model)
        return super()._get_model_and_dataset(model, dataset)

    def _plugin_config_files(self, model, dataset):
        props = properties_dir()
        data_path = self.external_config_dict.get("data_path") or default_data_path()
        return [
            (props / "overall.yaml", False),
            (props / "model" / f"{model}.yaml", False),
            (props / "dataset" / f"{dataset}.yaml", True),
            (Path(data_path) / dataset / f"{dataset}.yaml", True),
        ]

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        for path, is_dataset_file in self._plugin_config_files(model, dataset):
            if path.is_file():
                config_dict = self._update_internal_config_dict(str(path)) or {}
                if is_dataset_file:
                    self.parameters["Dataset"] += [
                        k for k in config_dict if k not in self.parameters["Dataset"]
                    ]

    def _get_final_config_dict(self):
        """RecBole's merge, except that a partial ``eval_args`` (e.g. only ``mode``) updates the
        defaults key by key instead of replacing them (RecBole would fall back to a random split)."""
        final = super()._get_final_config_dict()
        internal = self.internal_config_dict.get("eval_args")
        external = self.external_config_dict.get("eval_args")
        if isinstance(internal, dict) and isinstance(external, dict):
            final["eval_args"] = {**internal, **external}
        return final

    def _set_train_mode(self):
        """``train_mode``: prefix (RecBole's augmentation), all_positions, or auto/None:
        all_positions when MAX_ITEM_LIST_LENGTH > 200, else prefix."""
        length = self.final_config_dict.get("MAX_ITEM_LIST_LENGTH")
        if not isinstance(length, int) or isinstance(length, bool) or length < 1:
            raise ConfigError(f"MAX_ITEM_LIST_LENGTH must be a positive integer, got {length!r}")
        mode = self.final_config_dict.get("train_mode")
        self.train_mode_chosen_automatically = mode in (None, "auto")
        if self.train_mode_chosen_automatically:
            mode = "all_positions" if length > ALL_POSITIONS_ABOVE else "prefix"
        elif mode not in TRAIN_MODES:
            raise ConfigError(f"train_mode must be one of auto, {', '.join(TRAIN_MODES)}; got {mode!r}")
        self.final_config_dict["train_mode"] = mode

    def _set_default_parameters(self):
        data_path = self.final_config_dict.get("data_path") or default_data_path()
        self.final_config_dict["data_path"] = os.path.abspath(os.path.expanduser(data_path))
        if self.dataset != EMBEDDED_DATASET:
            folder = os.path.join(self.final_config_dict["data_path"], self.dataset)
            if not os.path.isfile(os.path.join(folder, f"{self.dataset}.inter")):
                choices = ", ".join(available_datasets(self.final_config_dict["data_path"]))
                raise ConfigError(
                    f"unknown dataset {self.dataset!r}: no {self.dataset}.inter in {folder}; "
                    f"available: {choices}"
                )
        self._set_train_mode()
        all_positions = self.final_config_dict["train_mode"] == "all_positions"
        if all_positions:  # negatives are drawn per position by the loss, not by RecBole's sampler
            self.final_config_dict["train_neg_sample_args"] = None
        loss_type = self.final_config_dict.get("loss_type")
        if loss_type in SAMPLED_LOSSES and not all_positions and not self.final_config_dict.get(
            "train_neg_sample_args"
        ):
            # BPR and BCE need one sampled negative per row; RecBole leaves it to the user to say so
            self.final_config_dict["train_neg_sample_args"] = {"distribution": "uniform", "sample_num": 1}
        super()._set_default_parameters()
        if all_positions:
            self.final_config_dict["MODEL_INPUT_TYPE"] = InputType.POINTWISE
        elif loss_type == "BCE" and not hasattr(self.model_class, "input_type"):
            # RecBole only knows CE (pointwise) and BPR (pairwise); BCE reads pairs like BPR
            self.final_config_dict["MODEL_INPUT_TYPE"] = InputType.PAIRWISE
