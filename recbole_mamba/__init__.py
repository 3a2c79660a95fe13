"""recbole-mamba: state-space (Mamba) sequential recommenders for RecBole.

Library API: :func:`recbole_mamba.run` (train and test, :mod:`recbole_mamba.quick_start`) and
:func:`recbole_mamba.load_run` (a checkpoint evaluated again); models in
:mod:`recbole_mamba.model`; the Mamba mixer in :mod:`recbole_mamba.layers`; the selective scan in
:mod:`recbole_mamba.ops`. The package itself imports nothing heavy: the converters
(``python -m recbole_mamba.atomics``) start without torch or RecBole.
"""

__version__ = "0.1.0"
_QUICK_START = ("run", "load_run")


def __getattr__(name):
    if name in _QUICK_START:
        from recbole_mamba import quick_start

        return getattr(quick_start, name)
    raise AttributeError(f"module 'recbole_mamba' has no attribute {name!r}")
