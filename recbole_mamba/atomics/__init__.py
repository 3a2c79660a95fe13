"""Converters from raw dumps to RecBole atomic files: ``python -m recbole_mamba.atomics``.

A data tool: imports neither torch nor the models.
"""

from recbole_mamba.atomics.convert import convert_kuairand, convert_lfm1b, default_name
from recbole_mamba.atomics.errors import RawInputError

__all__ = ["RawInputError", "convert_kuairand", "convert_lfm1b", "default_name"]
