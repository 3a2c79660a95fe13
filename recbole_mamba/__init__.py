"""recbole-mamba: state-space (Mamba) sequential recommenders for RecBole.

Library API: :func:`recbole_mamba.quick_start.run`; models in :mod:`recbole_mamba.model`; the Mamba
mixer in :mod:`recbole_mamba.layers`; the selective scan in :mod:`recbole_mamba.ops`.
"""

__version__ = "0.1.0"
