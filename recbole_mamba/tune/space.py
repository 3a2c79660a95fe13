"""Search spaces: yaml files and RecBole's hyper-parameter files, checked before Ray starts.

yaml: ``name: {kind: args}`` with kind ``choice`` (list), ``grid`` (list), ``uniform`` ([low,
high]), ``loguniform`` ([low, high], low > 0), ``randint`` ([low, high], high exclusive), or
``trial`` (list): a fixed list of trials written column-wise, trial i taking every parameter's i-th
value (a designed search, e.g. a fractional factorial, the same for every model); ``trial`` lists
have one length and mix with no other kind.
RecBole's hyper file: ``name kind values`` per line, kind ``choice`` ([a,b,...]), ``uniform``
(low,high), ``loguniform`` (low,high given as natural logs, as hyperopt's), ``quniform``
(low,high,q). Both parse to the same :class:`Param` list, which :func:`to_ray` turns into Ray Tune
domains.
"""

import ast
import math
from dataclasses import dataclass

import yaml

from recbole_mamba.errors import ConfigError

KINDS = ("choice", "grid", "uniform", "loguniform", "randint", "quniform", "trial")


class SpaceError(ConfigError):
    """An invalid search-space definition, naming the file and line."""


@dataclass(frozen=True)
class Param:
    """One searched parameter: kind in :data:`KINDS`, args as a tuple."""

    name: str
    kind: str
    args: tuple


def _check(param, where):
    kind, args = param.kind, param.args
    if kind not in KINDS:
        raise SpaceError(f"{where}: unknown kind {kind!r} for {param.name!r}; use one of {', '.join(KINDS)}")
    if kind in ("choice", "grid", "trial"):
        if not args:
            raise SpaceError(f"{where}: {param.name}: {kind} needs a non-empty list")
        return param
    numbers = all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args)
    wanted = 3 if kind == "quniform" else 2
    if len(args) != wanted or not numbers:
        raise SpaceError(f"{where}: {param.name}: {kind} needs {wanted} numbers, got {list(args)!r}")
    low, high = args[0], args[1]
    if not low < high:
        raise SpaceError(f"{where}: {param.name}: {kind} needs low < high, got {low}, {high}")
    if kind == "loguniform" and low <= 0:
        raise SpaceError(f"{where}: {param.name}: loguniform needs low > 0, got {low}")
    if kind == "quniform" and (args[2] <= 0 or any(math.remainder(b, args[2]) != 0 for b in args[:2])):
        raise SpaceError(f"{where}: {param.name}: quniform needs q > 0 dividing low and high, got {list(args)!r}")
    if kind == "randint" and not all(isinstance(a, int) for a in args):
        raise SpaceError(f"{where}: {param.name}: randint needs integers, got {list(args)!r}")
    return param


def parse_yaml_space(text, path="<space>"):
    """Params of a yaml space file's text."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpaceError(f"{path}: not valid yaml: {e}") from None
    if not isinstance(data, dict) or not data:
        raise SpaceError(f"{path}: expected a mapping of parameter -> {{kind: values}}")
    params = []
    lines = text.splitlines()
    for name, spec in data.items():
        line = next((i + 1 for i, l in enumerate(lines) if l.lstrip().startswith(f"{name}:")), None)
        where = f"{path} line {line}" if line else path
        if not isinstance(spec, dict) or len(spec) != 1:
            raise SpaceError(f"{where}: {name}: expected one {{kind: values}}, e.g. {{choice: [1, 2]}}")
        (kind, values), = spec.items()
        if not isinstance(values, list):
            raise SpaceError(f"{where}: {name}: {kind} takes a list, got {values!r}")
        params.append(_check(Param(str(name), str(kind), tuple(values)), where))
    _check_trials(params, path)
    return params


def _check_trials(params, path):
    trial = [p for p in params if p.kind == "trial"]
    if not trial:
        return
    if len(trial) != len(params):
        others = ", ".join(p.name for p in params if p.kind != "trial")
        raise SpaceError(f"{path}: 'trial' lists fix every trial; they mix with no other kind ({others})")
    lengths = {p.name: len(p.args) for p in trial}
    if len(set(lengths.values())) != 1:
        raise SpaceError(f"{path}: every 'trial' list needs one value per trial, got lengths "
                         + ", ".join(f"{name} {n}" for name, n in lengths.items()))


def trial_points(params):
    """The fixed trials of a space of ``trial`` lists, as ``[{name: value}]``; [] for other spaces."""
    if not params or params[0].kind != "trial":
        return []
    return [dict(zip([p.name for p in params], values, strict=True))
            for values in zip(*(p.args for p in params), strict=True)]


def parse_hyper_file(text, path="<hyper>"):
    """Params of a RecBole hyper file's text (``learning_rate loguniform -8,0``)."""
    params = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{path} line {number}"
        parts = line.split(maxsplit=2)
        if len(parts) != 3:
            raise SpaceError(f"{where}: expected 'name kind values', got {raw.strip()!r}")
        name, kind, values = parts
        try:
            parsed = ast.literal_eval(values if kind == "choice" else f"({values},)")
        except (ValueError, SyntaxError):
            raise SpaceError(f"{where}: cannot read values {values!r}") from None
        if kind == "choice":
            if not isinstance(parsed, (list, tuple)):
                raise SpaceError(f"{where}: choice takes a list, e.g. [1,2], got {values!r}")
            params.append(_check(Param(name, "choice", tuple(parsed)), where))
        elif kind == "loguniform":  # hyperopt's: bounds are natural logs
            if len(parsed) != 2:
                raise SpaceError(f"{where}: loguniform takes low,high (natural logs), got {values!r}")
            params.append(_check(Param(name, "loguniform", (math.exp(parsed[0]), math.exp(parsed[1]))), where))
        else:
            params.append(_check(Param(name, kind, tuple(parsed)), where))
    if not params:
        raise SpaceError(f"{path}: no parameters")
    _check_trials(params, path)
    return params


def load_space(path):
    """Params of a space file: ``.yaml``/``.yml`` as yaml, anything else as a RecBole hyper file."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise SpaceError(f"cannot read search space {path}: {e.strerror}") from None
    if str(path).endswith((".yaml", ".yml")):
        return parse_yaml_space(text, path)
    return parse_hyper_file(text, path)


def to_ray(params):
    """{name: Ray Tune domain} for Tuner's param_space."""
    from ray import tune

    make = {
        "choice": lambda a: tune.choice(list(a)),
        "grid": lambda a: tune.grid_search(list(a)),
        "uniform": lambda a: tune.uniform(*a),
        "loguniform": lambda a: tune.loguniform(*a),
        "randint": lambda a: tune.randint(*a),
        "quniform": lambda a: tune.quniform(*a),
        "trial": lambda a: tune.choice([v for i, v in enumerate(a) if v not in a[:i]]),  # points: search.py
    }
    return {p.name: make[p.kind](p.args) for p in params}
