"""The plugin's recommenders (RecBole ``SequentialRecommender`` subclasses)."""

from recbole_mamba.model.mambarec import MambaRec
from recbole_mamba.model.moematrrec import MoEMaTrRec
from recbole_mamba.model.next_item import NextItemRecommender
from recbole_mamba.model.recmamba import RecMamba

__all__ = ["MambaRec", "MoEMaTrRec", "NextItemRecommender", "RecMamba"]
