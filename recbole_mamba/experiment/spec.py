"""An experiment yaml (``properties/experiment/*.yaml``) and the cells it names.

::

    name: quick                       # default: the file's stem
    models: [GRU4Rec, SASRec, MambaRec]
    seeds: [0, 1]
    protocols: [full, uni100]         # full | uniN | popN; the first selects the checkpoint (valid_metric),
                                      # the others evaluate that same checkpoint again
    settings: {epochs: 100}           # RecBole keys for every cell
    model_settings:                   # per model, over settings
      RecMamba: {loss_type: CE}
    datasets:
      - name: ml-100k                 # the label in the tables
        lengths: [50, 200]            # MAX_ITEM_LIST_LENGTH of the cells
      - name: kuairand
        dataset: kuairand-{cut}       # the dataset of each length: {cut} is the converters' label (2k, 500)
        convert: kuairand log_*.csv   # how to make it, less --max-len and --name, which each length sets
        lengths: [2000, 5000]
        settings: {...}               # this dataset's cells, over settings
      - name: longrange
        generate: {users: 1000, length: 160, items: 100, lags: [2, 8, 32], noise: 0.1, seed: 0}
        lengths: [4, 16, 64]          # written to data_path by recbole_mamba.atomics.synthetic if missing

A cell is (dataset, model, length, seed); its config is settings < dataset settings < model
settings < the overrides of the command line < the cell's own MAX_ITEM_LIST_LENGTH, seed and
evaluation mode. A dataset with ``convert`` is made by
``python -m recbole_mamba.atomics {convert} --max-len {length + 3} --name {dataset}``: the one
command the docs show too; a grid whose converted dataset is missing says so before it starts.
"""

import os
import re
from dataclasses import dataclass, field

import yaml

from recbole_mamba.atomics.convert import cut_command, cut_dataset_name
from recbole_mamba.errors import ConfigError

KEYS = ("name", "models", "seeds", "protocols", "settings", "model_settings", "datasets")
DATASET_KEYS = ("name", "dataset", "lengths", "settings", "generate", "convert")
GENERATE_KEYS = ("users", "length", "items", "lags", "noise", "seed")
PROTOCOL = re.compile(r"^(full|(uni|pop)[1-9][0-9]*)$")
CELL_KEYS = ("MAX_ITEM_LIST_LENGTH", "seed")  # set by the grid, not by settings


@dataclass(frozen=True)
class Cell:
    """One (dataset, model, length, seed) of the grid, with the config it trains with."""

    label: str  # the dataset's name in the tables
    dataset: str  # the dataset RecBole loads
    model: str
    length: int
    seed: int
    config: dict = field(compare=False, hash=False)

    @property
    def id(self):
        return f"{self.label}-{self.model}-{self.length}-{self.seed}"


@dataclass
class DatasetEntry:
    name: str
    lengths: list
    dataset: str = None  # a template with {cut}, or None for ``name``
    settings: dict = field(default_factory=dict)
    generate: dict = None
    convert: str = None  # the converter's arguments less --max-len and --name

    def dataset_for(self, length):
        return cut_dataset_name(self.dataset or self.name, length)

    def convert_command(self, length, output_dir=None):
        """The command that makes this entry's dataset for ``length`` (in ``output_dir``), or None."""
        return cut_command(self.convert, length, self.dataset_for(length), output_dir) if self.convert else None


@dataclass
class Experiment:
    name: str
    models: list
    seeds: list
    protocols: list
    datasets: list
    settings: dict = field(default_factory=dict)
    model_settings: dict = field(default_factory=dict)
    overrides: dict = field(default_factory=dict)  # from the command line, over every cell's settings

    def as_dict(self):
        """The experiment as its yaml (with the command line's overrides), as stored in ``--out``."""
        return {
            "name": self.name, "models": self.models, "seeds": self.seeds, "protocols": self.protocols,
            "settings": self.settings, "model_settings": self.model_settings,
            "datasets": [{k: v for k, v in vars(d).items() if v not in (None, {})} for d in self.datasets],
            **({"overrides": self.overrides} if self.overrides else {}),
        }

    def cells(self):
        """Every cell, dataset by dataset, then length, model and seed."""
        cells = []
        for entry in self.datasets:
            for length in entry.lengths:
                for model in self.models:
                    for seed in self.seeds:
                        config = {**self.settings, **entry.settings, **self.model_settings.get(model, {}),
                                  **self.overrides, "MAX_ITEM_LIST_LENGTH": length, "seed": seed}
                        mode = self.protocols[0]
                        config["eval_args"] = {**config.get("eval_args", {}), "mode": mode}
                        cells.append(Cell(entry.name, entry.dataset_for(length), model, length, seed, config))
        return cells


def _fail(source, where, message):
    raise ConfigError(f"{source}: {where}: {message}")


def _list(source, where, value, kind, check=lambda v: True):
    if not isinstance(value, list) or not value or not all(isinstance(v, kind) and check(v) for v in value):
        _fail(source, where, f"must be a non-empty list of {kind.__name__}s"
              + (" > 0" if kind is int and not check(0) else "") + f", got {value!r}")
    if len(set(value)) != len(value):
        _fail(source, where, f"has duplicates: {value!r}")
    return list(value)


def _mapping(source, where, value):
    if value is None:
        return {}
    if not isinstance(value, dict):
        _fail(source, where, f"must be a mapping of RecBole keys, got {value!r}")
    fixed = sorted(set(value) & set(CELL_KEYS))
    if fixed:
        _fail(source, where, f"{', '.join(fixed)} is set by the grid (lengths, seeds), not by settings")
    return dict(value)


def _unknown(source, where, value, known):
    extra = sorted(set(value) - set(known))
    if extra:
        _fail(source, where, f"unknown key {extra[0]!r} (known: {', '.join(known)})")


def parse_experiment(raw, source, overrides=None):
    """An :class:`Experiment` from the yaml's mapping ``raw``; ``source`` names it in errors."""
    from recbole_mamba.registry import model_names

    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: an experiment must be a yaml mapping, got {type(raw).__name__}")
    _unknown(source, "top level", raw, KEYS + ("overrides",))
    for key in ("models", "datasets"):
        if key not in raw:
            _fail(source, key, "missing")
    plugin, recbole_models = model_names()
    models = _list(source, "models", raw["models"], str)
    for model in models:
        if model not in plugin + recbole_models:
            _fail(source, "models", f"unknown model {model!r} (plugin: {', '.join(plugin)}; or RecBole's)")
    seeds = _list(source, "seeds", raw.get("seeds", [2020]), int)
    protocols = _list(source, "protocols", raw.get("protocols", ["full"]), str)
    for protocol in protocols:
        if not PROTOCOL.match(protocol):
            _fail(source, "protocols", f"{protocol!r} is not full, uniN or popN")
    model_settings = raw.get("model_settings") or {}
    if not isinstance(model_settings, dict):
        _fail(source, "model_settings", f"must map model names to settings, got {model_settings!r}")
    for model, values in model_settings.items():
        if model not in models:
            _fail(source, f"model_settings.{model}", f"{model} is not in models")
        model_settings[model] = _mapping(source, f"model_settings.{model}", values)
    if not isinstance(raw["datasets"], list) or not raw["datasets"]:
        _fail(source, "datasets", f"must be a non-empty list, got {raw['datasets']!r}")
    datasets = []
    for i, item in enumerate(raw["datasets"]):
        where = f"datasets[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            _fail(source, where, "must be a mapping with a name")
        _unknown(source, where, item, DATASET_KEYS)
        lengths = _list(source, f"{where}.lengths", item.get("lengths"), int, lambda v: v > 0)
        generate = item.get("generate")
        if generate is not None:
            if not isinstance(generate, dict):
                _fail(source, f"{where}.generate", f"must be a mapping, got {generate!r}")
            _unknown(source, f"{where}.generate", generate, GENERATE_KEYS)
        template = item.get("dataset")
        if template is not None and (not isinstance(template, str) or generate is not None):
            _fail(source, f"{where}.dataset", "must be a name (with {cut} for each length), and not with generate")
        convert = item.get("convert")
        if convert is not None:
            if not isinstance(convert, str) or generate is not None:
                _fail(source, f"{where}.convert", "must be the converter's arguments (a string), and not with generate")
            fixed = [flag for flag in ("--max-len", "--name", "--output-dir")
                     if any(word.split("=")[0] == flag for word in convert.split())]
            if fixed:
                _fail(source, f"{where}.convert", f"{fixed[0]} is set by the grid (each length, dataset and "
                      "data_path), not by convert")
        datasets.append(DatasetEntry(item["name"], lengths, template,
                                     _mapping(source, f"{where}.settings", item.get("settings")), generate, convert))
    labels = [d.name for d in datasets]
    if len(set(labels)) != len(labels):
        _fail(source, "datasets", f"names must be distinct, got {labels}")
    return Experiment(
        name=str(raw.get("name") or os.path.splitext(os.path.basename(source))[0]),
        models=models, seeds=seeds, protocols=protocols, datasets=datasets,
        settings=_mapping(source, "settings", raw.get("settings")), model_settings=model_settings,
        overrides=_mapping(source, "command line", {**(raw.get("overrides") or {}), **(overrides or {})}),
    )


def load_experiment(path, overrides=None):
    """Read and check the experiment yaml at ``path`` (or a shipped one by name: ``quick``,
    ``kuairand``, ``lfm1b``); ``overrides`` (RecBole keys, from the command line) go over every
    cell's settings."""
    from recbole_mamba.config import properties_dir

    shipped = properties_dir() / "experiment"
    if not os.path.isfile(path) and (shipped / f"{path}.yaml").is_file():
        path = str(shipped / f"{path}.yaml")
    if not os.path.isfile(path):
        names = ", ".join(sorted(p.stem for p in shipped.glob("*.yaml")))
        raise ConfigError(f"experiment file not found: {path} (shipped: {names})")
    with open(path, encoding="utf-8") as f:
        try:
            raw = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid yaml: {str(e).splitlines()[0]}") from None
    return parse_experiment(raw, path, overrides)
