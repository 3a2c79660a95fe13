"""recbole-mamba: state-space (Mamba) sequential recommenders for RecBole.

Library API: :func:`recbole_mamba.run` (train and test, :mod:`recbole_mamba.quick_start`),
:func:`recbole_mamba.load_run` (a checkpoint evaluated again) and :func:`recbole_mamba.load` (a
checkpoint as a recommender, :mod:`recbole_mamba.serve`); models in
:mod:`recbole_mamba.model`; the Mamba mixer in :mod:`recbole_mamba.layers`; the selective scan in
:mod:`recbole_mamba.ops`. The package itself imports nothing heavy: the converters
(``python -m recbole_mamba.atomics``) start without torch or RecBole. Importing it readies
RecBole 1.2.1 for numpy 2 (:mod:`recbole_mamba.recbole_stack`).
"""

from recbole_mamba import recbole_stack

__version__ = "0.1.0"
recbole_stack.install()  # RecBole 1.2.1's numpy 1 names, set before RecBole is imported
_LAZY = {"run": "quick_start", "load_run": "quick_start", "load": "serve"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"recbole_mamba.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'recbole_mamba' has no attribute {name!r}")
