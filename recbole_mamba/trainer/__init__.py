"""Training: RecBole Trainer subclasses."""

from recbole_mamba.trainer.checkpoint import (
    CheckpointError,
    checkpoint_parameters,
    load_checkpoint,
    save_checkpoint,
)
from recbole_mamba.trainer.trainer import SafeCheckpointTrainer

__all__ = ["CheckpointError", "SafeCheckpointTrainer", "checkpoint_parameters", "load_checkpoint", "save_checkpoint"]
