"""RecBole 1.2.1 on today's stack: what its code needs of numpy 2, applied once, before RecBole's
first module runs.

RecBole 1.2.1 (the latest release) was written for numpy 1. Its ``Config.__init__`` calls
``compatibility_settings``, which reads ``np.float_``, ``np.complex_`` and ``np.unicode_`` to set
``np.float``, ``np.int``, ``np.complex``, ``np.object``, ``np.str`` and ``np.unicode``; its metrics
(``np.float``), interaction collation (``np.float``) and hyper-tuning report (``np.str``) read
those at call time. numpy 2 removed all nine. :func:`numpy_aliases` gives each the value RecBole's
own ``compatibility_settings`` gives it on numpy 1; nothing else of numpy or RecBole is touched, and
nothing in site-packages is edited.

:func:`install` (run by ``import recbole_mamba``) applies them when RecBole is first imported, or
at once when it already is. Everything is checked before anything is set: a RecBole other than
1.2.1, or a numpy older than the plugin needs, is one :class:`~recbole_mamba.errors.InputError`
line saying what to install, with numpy left as it was. RecBole's ray<=2.6.3 is not the plugin's:
:func:`require_ray` refuses, before a search or grid imports Ray, a Ray its code cannot use.
"""

import re
import sys

from recbole_mamba.errors import InputError

RECBOLE_VERSION = "1.2.1"
NUMPY_MIN = (2, 0)
RAY_MIN = (2, 43)  # ray.tune.report / get_checkpoint / RunConfig (docs/recbole-stack.md)
# name numpy 2 removed -> the numpy 2 name RecBole's compatibility_settings maps it to
NUMPY_ALIASES = {
    "float_": "float64",
    "complex_": "complex128",
    "unicode_": "str_",
    "float": "float64",
    "int": "int_",
    "complex": "complex128",
    "object": "object_",
    "str": "str_",
    "unicode": "str_",
}


def version_tuple(text):
    """``'2.4.6'`` -> ``(2, 4, 6)``; the release numbers only (``'2.60.0rc1'`` -> ``(2, 60, 0)``)."""
    return tuple(int(number) for number in re.match(r"\d+(?:\.\d+)*", text).group().split("."))


def installed_version(distribution):
    """The installed version of ``distribution``, or None."""
    import importlib.metadata  # here, not at the top: ``import recbole_mamba`` stays fast

    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_recbole(version):
    """Refuse a missing RecBole or another release than the one the plugin is built on."""
    if version is None:
        raise InputError(
            f"recbole is not installed: pip install --no-deps recbole=={RECBOLE_VERSION} "
            "(its declared ray<=2.6.3 would downgrade Ray; docs/recbole-stack.md)")
    if version != RECBOLE_VERSION:
        raise InputError(
            f"recbole {version} is installed; recbole-mamba is built on recbole {RECBOLE_VERSION}: "
            f"pip install --no-deps recbole=={RECBOLE_VERSION}")


def dotted(version):
    return ".".join(map(str, version))


def check_ray(version):
    """Refuse a missing Ray, or one older than the plugin's Ray Tune code needs (RecBole's own
    ray<=2.6.3, say), in one line saying what to install."""
    if version is None or version_tuple(version) < RAY_MIN:
        found = "ray is not installed" if version is None else f"ray {version} is installed"
        raise InputError(f"{found}; searches and grids need ray >= {dotted(RAY_MIN)}: "
                         f"pip install -U 'ray[tune]>={dotted(RAY_MIN)}'")


def require_ray():
    """:func:`check_ray` of the installed Ray; call before importing it."""
    check_ray(installed_version("ray"))


def numpy_aliases(np):
    """The attributes to set on the numpy module ``np`` so that RecBole 1.2.1's code runs: every
    name of :data:`NUMPY_ALIASES` it lacks. A numpy 1 is refused: the plugin is built on numpy 2."""
    if version_tuple(np.__version__) < NUMPY_MIN:
        raise InputError(
            f"numpy {np.__version__} is installed; recbole-mamba needs numpy >= {dotted(NUMPY_MIN)}: "
            "pip install -U 'numpy>=2'")
    return {name: getattr(np, target) for name, target in NUMPY_ALIASES.items()
            if name not in vars(np)}


def apply():
    """Check RecBole's and numpy's versions, then set every alias RecBole 1.2.1 needs (all or
    none)."""
    check_recbole(installed_version("recbole"))
    import numpy as np

    for name, value in numpy_aliases(np).items():
        setattr(np, name, value)


class _BeforeRecbole:
    """A ``sys.meta_path`` finder that applies :func:`apply` when ``recbole`` is first imported,
    then leaves the import to the normal finders."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "recbole":
            apply()  # raises with nothing set; this finder stays, so a retried import raises again
            sys.meta_path.remove(self)
        return None


def install():
    """Apply the aliases before RecBole's first module runs: now if RecBole is already imported,
    else at its import. Idempotent."""
    if "recbole" in sys.modules:
        apply()
    elif not any(isinstance(finder, _BeforeRecbole) for finder in sys.meta_path):
        sys.meta_path.insert(0, _BeforeRecbole())
