"""The plugin's recommenders (RecBole ``SequentialRecommender`` subclasses)."""

from recbole_mamba.model.mambarec import MambaRec
from recbole_mamba.model.next_item import NextItemRecommender

__all__ = ["MambaRec", "NextItemRecommender"]
