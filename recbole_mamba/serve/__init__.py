"""Serving: a checkpoint -> :class:`Recommender` (top-k for histories and users) and live
:class:`Session` objects; needs only the checkpoint and the model classes."""

from recbole_mamba.errors import ServeError
from recbole_mamba.serve.recommender import Recommender, load
from recbole_mamba.serve.session import Session

__all__ = ["Recommender", "ServeError", "Session", "load"]
