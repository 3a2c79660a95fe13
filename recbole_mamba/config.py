"""RecBole's Config, extended with the plugin's yaml defaults, model registry and data path.

Merge order (later wins), as RecBole's own: RecBole's defaults < plugin defaults
(``properties/overall.yaml``) < model yaml (``properties/model/<Model>.yaml``) < dataset yaml
(``properties/dataset/<dataset>.yaml``, then ``<data_path>/<dataset>/<dataset>.yaml`` written by the
converters) < the model's tuned settings for the dataset (``properties/tuned/<dataset>/<Model>.yaml``,
each with the search that found them) < user config files < config dict < command-line
``--key=value``.

Checked here, each with one :class:`ConfigError` line: the model and dataset names (a name that
prefixes exactly one converted dataset, e.g. ``kuairand`` for ``kuairand-2k``, resolves to it),
the columns the protocol needs in a dataset's ``.inter`` header, and the type of every given value
against its default.
"""

import copy
import json
import numbers
import os
from pathlib import Path

import yaml
from recbole.config import Config
from recbole.utils import InputType

from recbole_mamba.atomics.check import header_fields
from recbole_mamba.atomics.convert import cut_command, cut_dataset_name
from recbole_mamba.atomics.store import STORE_MODES
from recbole_mamba.errors import ConfigError
from recbole_mamba.launch_keys import LAUNCH_KEYS
from recbole_mamba.model.losses import SAMPLED_LOSSES
from recbole_mamba.model.negatives import NEGATIVE_DISTRIBUTIONS, POPULARITY
from recbole_mamba.ops import BACKEND_NAMES
from recbole_mamba.registry import FEATURE_MODELS, get_model
from recbole_mamba.train_modes import (
    ALL_POSITIONS,
    ALL_POSITIONS_ABOVE,
    AUTO,
    PREFIX,
    TRAIN_BATCH_ORDERS,
    TRAIN_MODES,
    TRAIN_WINDOWS,
)

EMBEDDED_DATASET = "ml-100k"  # ships inside the recbole wheel (recbole/dataset_example/ml-100k)
ITEM_TABLE_UPDATES = ("dense", "sparse")  # Adam on every item row each step, or on the rows a batch reads
ITEM_TABLE_OPTIMIZERS = ("adam", "rowwise_adagrad")  # with sparse updates: trainer/optimizers.py
CHOICES = {"mamba_backend": BACKEND_NAMES, "train_mode": (AUTO, *TRAIN_MODES), "train_windows": TRAIN_WINDOWS,
           "train_batch_order": TRAIN_BATCH_ORDERS, "item_table_updates": ITEM_TABLE_UPDATES,
           "item_table_optimizer": ITEM_TABLE_OPTIMIZERS,
           "train_negatives_distribution": NEGATIVE_DISTRIBUTIONS, "interaction_store": STORE_MODES}

__all__ = ["ConfigError", "RecboleMambaConfig", "model_config_file", "plugin_config_files"]


def properties_dir():
    """The folder of the plugin's yaml defaults: inside the installed package (wheel) or at the
    root of a source checkout (editable install)."""
    here = Path(__file__).resolve().parent
    installed = here / "properties"
    return installed if installed.is_dir() else here.parent / "properties"


def model_config_file(model_name):
    """Path of a plugin model's yaml defaults."""
    path = properties_dir() / "model" / f"{model_name}.yaml"
    if not path.is_file():
        raise ConfigError(f"no plugin defaults for model {model_name!r} (looked for {path})")
    return str(path)


def plugin_config_files(model_name):
    """The plugin's yaml defaults for ``model_name``, in merge order (``overall.yaml``, then the
    model's own), for ``config_file_list`` of plain RecBole's ``Config``."""
    return [str(properties_dir() / "overall.yaml"), model_config_file(model_name)]


def default_data_path():
    """RecBole ``data_path`` of the plugin: ``dataset_atomics/`` in the working directory."""
    return os.path.abspath("dataset_atomics")


def _inter_file(data_path, name):
    return os.path.join(data_path, name, f"{name}.inter")


def available_datasets(data_path=None):
    """Names of the datasets that can be run: the embedded one and every folder of
    ``data_path`` that holds ``<name>/<name>.inter``."""
    data_path = data_path or default_data_path()
    names = {EMBEDDED_DATASET}
    if os.path.isdir(data_path):
        names.update(name for name in os.listdir(data_path) if os.path.isfile(_inter_file(data_path, name)))
    return sorted(names)


def shipped_conversions(output_dir=None):
    """{dataset: the converter command that makes it} of every dataset the shipped experiment
    grids (``properties/experiment/*.yaml``, their ``convert`` keys) convert."""
    commands = {}
    for path in sorted((properties_dir() / "experiment").glob("*.yaml")):
        for entry in yaml.safe_load(path.read_text(encoding="utf-8")).get("datasets", []):
            for length in entry.get("lengths", []) if entry.get("convert") else []:
                dataset = cut_dataset_name(entry.get("dataset") or entry["name"], length)
                commands[dataset] = cut_command(entry["convert"], length, dataset, output_dir)
    return commands


def resolve_dataset(name, data_path):
    """The dataset to load for ``name``: itself where ``data_path/name/name.inter`` exists (or it
    is the embedded one), else the one converted dataset whose name starts with ``name-`` (a
    default conversion of KuaiRand is ``kuairand-2k``). Otherwise a :class:`ConfigError` that says
    where it looked and how to make the dataset."""
    if name == EMBEDDED_DATASET or os.path.isfile(_inter_file(data_path, name)):
        return name
    available = available_datasets(data_path)
    candidates = [d for d in available if d.startswith(f"{name}-")]
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        raise ConfigError(
            f"dataset {name!r} could be any of {', '.join(candidates)} (in {data_path}); "
            f"name one, e.g. --dataset={candidates[0]}"
        )
    output_dir = data_path if os.path.abspath(data_path) != default_data_path() else None
    commands = shipped_conversions(output_dir)
    converter = commands.get(name) or next((cmd for dataset, cmd in commands.items() if dataset.startswith(f"{name}-")),
                                           None)
    make = (f"make it with: {converter}" if converter else
            f"put RecBole atomic files there ({name}.inter with a header such as "
            "user_id:token item_id:token timestamp:float; see dataset_atomics/README.md)")
    raise ConfigError(
        f"unknown dataset {name!r}: no {name}.inter in {os.path.join(data_path, name)}; {make}; "
        f"available: {', '.join(available)}"
    )


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


def _type_mismatch(value, default):
    """The expected type's name where ``value`` cannot stand for ``default``'s type, else None.
    A default of None says nothing; RecBole wraps a single metric or cut-off in a list, and reads
    ids and names (str defaults) from numbers too."""
    if default is None:
        return None
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "a boolean (True or False)"
    if isinstance(default, numbers.Integral):
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        return None if ok else "an integer"
    if isinstance(default, numbers.Real):
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        return None if ok else "a number"
    if isinstance(default, str):
        return None if isinstance(value, (str, numbers.Real)) else "a string"
    if isinstance(default, (list, tuple)):
        return None if isinstance(value, (list, tuple, str, numbers.Integral)) else "a list"
    if isinstance(default, dict):
        return None if value is None or isinstance(value, dict) else "a dict"
    return None


def read_inter_header(path, separator):
    """Field names of an atomic file's header (``name:type`` -> ``name``)."""
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\r\n")
    return [column.split(":", 1)[0] for column in header.split(separator)]


class RecboleMambaConfig(Config):
    """``Config(model, dataset, config_file_list, config_dict, cmd_args)``.

    Unlike RecBole's Config, command-line overrides come from ``cmd_args`` (a list of
    ``--key=value`` strings) rather than from ``sys.argv``, so the library API never reads the
    caller's command line. ``model`` may be a name (plugin or RecBole model) or a class.

    Attributes beside RecBole's: ``dataset_requested`` (the name asked for, where it resolved to
    another), ``train_mode_chosen_automatically``, ``train_batch_from_tokens`` (whether
    ``train_batch_size`` was derived from ``train_batch_tokens``), and ``parameters_dict``: every
    key's value as merged from the yaml files, dict and command line before RecBole derives its
    own, with the batch sizes the plugin derived from tokens (a checkpoint stores it, and
    :func:`recbole_mamba.quick_start.load_run` and a resumed ``run`` rebuild the config from it
    alone).
    """

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None, cmd_args=()):
        self._cmd_args = list(cmd_args)
        super().__init__(model, dataset, config_file_list, config_dict)

    def _init_device(self):
        """RecBole's, with the devices a launcher or the user chose kept: without a given
        ``gpu_id`` the GPUs ``CUDA_VISIBLE_DEVICES`` shows (set by Ray for its trial or cell, by a
        launcher for its rank, or by the user; unset: all) stay visible and the variable is left as
        it was (RecBole writes its default ``'0'`` into it: every Ray trial and every rank on
        physical GPU 0); a given ``gpu_id`` keeps RecBole's meaning (it becomes
        ``CUDA_VISIBLE_DEVICES``); ``use_gpu: False`` trains on the CPU (RecBole reads it only
        for its log)."""
        import torch

        given = "gpu_id" in self.external_config_dict
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if not given:
            self.final_config_dict["gpu_id"] = (visible if visible is not None
                                                else ",".join(map(str, range(torch.cuda.device_count()))))
        super()._init_device()
        if not given:
            if visible is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = visible
        if not self.final_config_dict["use_gpu"]:
            self.final_config_dict["device"] = torch.device("cpu")

    def _load_cmd_line(self):
        return self._convert_config_dict(parse_cmd_args(self._cmd_args))

    def _data_path(self):
        data_path = self.external_config_dict.get("data_path") or default_data_path()
        return os.path.abspath(os.path.expanduser(data_path))

    def _get_model_and_dataset(self, model, dataset):
        model = model if model is not None else self.external_config_dict.get("model")
        if isinstance(model, str):
            model = get_model(model)
        model, model_class, requested = super()._get_model_and_dataset(model, dataset)
        if model_class.__module__.startswith("recbole."):
            get_model(model)  # a RecBole model given as a class: refused ones say why
        if not isinstance(requested, str):
            raise ConfigError(f"dataset must be a name, got {requested!r}")
        dataset = resolve_dataset(requested, self._data_path())
        self.dataset_requested = requested if dataset != requested else None
        return model, model_class, dataset

    def _plugin_config_files(self, model, dataset):
        props = properties_dir()
        return [
            (props / "overall.yaml", False),
            (props / "model" / f"{model}.yaml", False),
            (props / "dataset" / f"{dataset}.yaml", True),
            (Path(self._data_path()) / dataset / f"{dataset}.yaml", True),
            (props / "tuned" / dataset / f"{model}.yaml", False),
        ]

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        self.default_sources = {}  # key -> the plugin's yaml file that set its default last
        for path, is_dataset_file in self._plugin_config_files(model, dataset):
            if path.is_file():
                config_dict = self._update_internal_config_dict(str(path)) or {}
                self.default_sources.update(dict.fromkeys(config_dict, path))
                if is_dataset_file:
                    self.parameters["Dataset"] += [
                        k for k in config_dict if k not in self.parameters["Dataset"]
                    ]

    def source_of(self, key):
        """Where ``key``'s value came from: 'given' (command line, config dict or file), the
        plugin's yaml file that set it (a dataset's own yaml, e.g. a converter's cut), or
        RecBole's defaults."""
        if key in self.external_config_dict:
            return "given"
        path = self.default_sources.get(key)
        if path is None:
            return "RecBole's default"
        return str(path.relative_to(properties_dir().parent)) if path.is_relative_to(properties_dir().parent) else str(path)

    def _get_final_config_dict(self):
        """RecBole's merge, except that a partial ``eval_args`` (e.g. only ``mode``) updates the
        defaults key by key instead of replacing them (RecBole would fall back to a random split);
        every given value is checked against its default's type first."""
        for key in LAUNCH_KEYS:
            if key in self.external_config_dict:
                raise ConfigError(
                    f"{key} is an option of a launch, not of a run's config: give --nproc=N (--world_size, --ip, "
                    "--port, --offset for several machines) on the command line, or start the ranks with "
                    "torchrun or Ray Train (docs/distributed.md)")
        for key, value in self.external_config_dict.items():
            expected = _type_mismatch(value, self.internal_config_dict.get(key))
            if expected:
                raise ConfigError(f"{key} must be {expected}, got {value!r}")
        for key, choices in CHOICES.items():
            value = self.external_config_dict.get(key, self.internal_config_dict.get(key))
            if key in self.external_config_dict and value not in choices:
                raise ConfigError(f"{key} must be one of {', '.join(choices)}; got {value!r}")
        final = super()._get_final_config_dict()
        internal = self.internal_config_dict.get("eval_args")
        external = self.external_config_dict.get("eval_args")
        if isinstance(internal, dict) and isinstance(external, dict):
            final["eval_args"] = {**internal, **external}
        self.parameters_dict = {
            key: copy.deepcopy(value) for key, value in final.items() if _is_plain(value)
        }
        return final

    def _set_train_mode(self):
        """``train_mode``: prefix (RecBole's augmentation), all_positions, or auto/None:
        all_positions when MAX_ITEM_LIST_LENGTH > ALL_POSITIONS_ABOVE, else prefix."""
        length = length_of(self.final_config_dict)
        mode = self.final_config_dict.get("train_mode")
        self.train_mode_chosen_automatically = mode in (None, AUTO)
        if self.train_mode_chosen_automatically:
            mode = ALL_POSITIONS if length > ALL_POSITIONS_ABOVE else PREFIX
        if mode == ALL_POSITIONS:
            from recbole_mamba.trainer.all_positions import supports_all_positions

            if not supports_all_positions(self.model_class):
                raise ConfigError(
                    f"train_mode all_positions needs per-position outputs: supported are the "
                    f"plugin's models, SASRec and GRU4Rec, not {self.model}; use --train_mode=prefix"
                )
        self.final_config_dict["train_mode"] = mode

    def _check_dataset_files(self, folder):
        """The ``.inter`` header in ``folder`` has the user, item and time fields (sequential models
        order each user's interactions by time); they are loaded even where ``load_col`` leaves them
        out (RecBole's default loads only user and item). Feature models need their item features."""
        final = self.final_config_dict
        separator = final.get("field_separator") or "\t"
        path = os.path.join(folder, f"{self.dataset}.inter")
        # name:type columns, and a file with another separator told so
        fields = [name for name, _ in header_fields(path, separator)]
        keys = ("USER_ID_FIELD", "ITEM_ID_FIELD", "TIME_FIELD")
        needed = [final[key] for key in keys]
        for key in keys:
            field = final[key]
            if field not in fields:
                fix = ("add a timestamp:float column (any increasing number orders the rows), or "
                       "name the column that orders them with --TIME_FIELD=<column>"
                       if key == "TIME_FIELD" else f"rename the column, or set --{key}=<column>")
                raise ConfigError(
                    f"{path} has no {field!r} column (its columns: {', '.join(fields)}); "
                    f"sequential models need user, item and time fields: {fix}"
                )
        load_col = final.get("load_col")
        if isinstance(load_col, dict) and isinstance(load_col.get("inter"), list):
            missing = [field for field in needed if field not in load_col["inter"]]
            final["load_col"] = {**load_col, "inter": load_col["inter"] + missing}
        if self.model in FEATURE_MODELS:
            item_path = os.path.join(folder, f"{self.dataset}.item")
            have = read_inter_header(item_path, separator) if os.path.isfile(item_path) else []
            lacking = [f for f in final.get("selected_features") or [] if f not in have]
            if lacking:
                raise ConfigError(
                    f"{self.model} needs the item features {', '.join(lacking)} (selected_features) "
                    f"in {item_path}, loaded by load_col's item list"
                )

    def _check_sparse_table_updates(self, loss_type):
        """``item_table_updates: sparse`` needs a model scored by its item table, a loss that reads
        some of its rows (not CE) and Adam without weight decay (torch's SparseAdam has none)."""
        from recbole_mamba.trainer.all_positions import scores_by_dot_product

        final = self.final_config_dict
        problem = None
        if not scores_by_dot_product(self.model_class):
            problem = f"{self.model} is not scored by an item table (the plugin's models, SASRec and GRU4Rec are)"
        elif loss_type == "CE":
            problem = "loss_type CE reads every item at every step; use SSM, GBCE, BPR or BCE"
        elif str(final.get("learner", "adam")).lower() != "adam" or final.get("weight_decay"):
            problem = "its optimizer is Adam without weight decay (learner adam, weight_decay 0)"
        if problem:
            raise ConfigError(f"item_table_updates sparse: {problem}")

    def _set_default_parameters(self):
        data_path = self._data_path()
        self.final_config_dict["data_path"] = data_path
        self.parameters_dict["data_path"] = data_path
        if self.dataset != EMBEDDED_DATASET:
            self._check_dataset_files(os.path.join(data_path, self.dataset))
        self._set_train_mode()
        all_positions = self.final_config_dict["train_mode"] == ALL_POSITIONS
        if all_positions:  # negatives are drawn per position by the loss, not by RecBole's sampler
            self.final_config_dict["train_neg_sample_args"] = None
        tokens = self.final_config_dict.get("train_batch_tokens")
        # a train_batch_size given by the user (file, dict, command line) wins
        self.train_batch_from_tokens = (
            all_positions and tokens is not None and "train_batch_size" not in self.external_config_dict
        )
        if self.train_batch_from_tokens:
            if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1:
                raise ConfigError(f"train_batch_tokens must be a positive integer, got {tokens!r}")
            self.final_config_dict["train_batch_size"] = max(1, tokens // length_of(self.final_config_dict))
            # as a given value, so that a config rebuilt from a checkpoint's parameters keeps it
            self.parameters_dict["train_batch_size"] = self.final_config_dict["train_batch_size"]
        eval_tokens = self.final_config_dict.get("eval_batch_tokens")
        if eval_tokens is not None and "eval_batch_size" not in self.external_config_dict:
            if not isinstance(eval_tokens, int) or isinstance(eval_tokens, bool) or eval_tokens < 1:
                raise ConfigError(f"eval_batch_tokens must be a positive integer, got {eval_tokens!r}")
            self.final_config_dict["eval_batch_size"] = max(1, min(
                self.final_config_dict["eval_batch_size"], eval_tokens // length_of(self.final_config_dict)))
            self.parameters_dict["eval_batch_size"] = self.final_config_dict["eval_batch_size"]
        drop = self.final_config_dict.get("plateau_loss_drop")
        if not isinstance(drop, (int, float)) or isinstance(drop, bool) or not 0 <= drop < 1:
            raise ConfigError(f"plateau_loss_drop must be a fraction in [0, 1), got {drop!r}")
        loss_type = self.final_config_dict.get("loss_type")
        pairwise = getattr(self.model_class, "input_type", None) == InputType.PAIRWISE
        if (loss_type in SAMPLED_LOSSES or pairwise) and not all_positions and not self.final_config_dict.get(
            "train_neg_sample_args"
        ):
            # BPR, BCE and pairwise models need one sampled negative per row; RecBole leaves it to
            # the user to say so
            self.final_config_dict["train_neg_sample_args"] = {
                "distribution": self.final_config_dict.get("train_negatives_distribution") or "uniform",
                "sample_num": 1}
        if loss_type == "GBCE" and self.final_config_dict.get("train_negatives_distribution") == POPULARITY:
            raise ConfigError("loss_type GBCE calibrates for uniform negatives (train_negatives_distribution "
                              "uniform); popularity negatives go with SSM, which corrects for them (log-Q)")
        if self.final_config_dict.get("item_table_updates") == "sparse":
            self._check_sparse_table_updates(loss_type)
        elif self.final_config_dict.get("item_table_optimizer", "adam") != "adam":
            raise ConfigError(f"item_table_optimizer {self.final_config_dict['item_table_optimizer']} updates the rows "
                              "a batch reads: it needs item_table_updates sparse (and a sampled loss: SSM, GBCE, "
                              "BPR or BCE)")
        table_lr = self.final_config_dict.get("item_table_learning_rate")
        if table_lr is not None and (isinstance(table_lr, bool) or not isinstance(table_lr, (int, float))
                                     or table_lr <= 0):
            raise ConfigError(f"item_table_learning_rate must be a number > 0 (or ~ for learning_rate), got {table_lr!r}")
        super()._set_default_parameters()
        if all_positions:
            self.final_config_dict["MODEL_INPUT_TYPE"] = InputType.POINTWISE
        elif loss_type == "BCE" and not hasattr(self.model_class, "input_type"):
            # RecBole only knows CE (pointwise) and BPR (pairwise); BCE reads pairs like BPR
            self.final_config_dict["MODEL_INPUT_TYPE"] = InputType.PAIRWISE


def length_of(config):
    """``MAX_ITEM_LIST_LENGTH``, checked."""
    length = config.get("MAX_ITEM_LIST_LENGTH")
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise ConfigError(f"MAX_ITEM_LIST_LENGTH must be a positive integer, got {length!r}")
    return length


def _is_plain(value):
    """Whether ``value`` survives JSON as itself (yaml and command-line values do)."""
    try:
        return json.loads(json.dumps(value)) == value
    except (TypeError, ValueError):
        return False
