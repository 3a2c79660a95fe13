"""One model trained by many processes (torchrun, ``--nproc``, Ray Train): who a rank is
(:mod:`~recbole_mamba.distributed.context`), its share of each training batch
(:mod:`~recbole_mamba.distributed.train_shards`) and the loss over all ranks' positions
(:mod:`~recbole_mamba.distributed.global_loss`), its share of each evaluation
(:mod:`~recbole_mamba.distributed.eval_shards`), the trainer (:mod:`~recbole_mamba.distributed.trainer`)
and the ``--nproc`` launcher (:mod:`~recbole_mamba.distributed.launch`). See docs/distributed.md.
The names below are imported when first used: context, global_loss and launch need torch alone."""

_LAZY = {"DistributedContext": "context", "DistributedTrainer": "trainer", "ForkedRanks": "launch",
         "shard_evaluation": "eval_shards"}
__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"recbole_mamba.distributed.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'recbole_mamba.distributed' has no attribute {name!r}")
