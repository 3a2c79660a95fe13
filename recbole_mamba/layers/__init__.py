"""Neural network layers; pure PyTorch, no RecBole imports."""

from recbole_mamba.layers.blocks import MambaBlock, PointWiseFeedForward
from recbole_mamba.layers.gates import ExpertGate
from recbole_mamba.layers.mamba import Mamba

__all__ = ["ExpertGate", "Mamba", "MambaBlock", "PointWiseFeedForward"]
