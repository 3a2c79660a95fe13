"""``python forked_run.py CONFIG_JSON OUT_DIR [MODEL]``: ``run(MODEL, "ml-tiny")`` (default MambaRec) on 2 forked ranks
(:class:`~recbole_mamba.distributed.ForkedRanks`, the library path of ``--nproc=2``); rank 0
writes ``result.json`` (metrics at full precision, the checkpoint), every rank ``shares-<rank>.json``
(its positions and the batch's, each batch of each epoch)."""

import json
import sys
from pathlib import Path

from recbole_mamba.distributed import ForkedRanks
from recbole_mamba.distributed.train_shards import RankShareLoader
from recbole_mamba.quick_start import run

config, out = json.loads(sys.argv[1]), Path(sys.argv[2])
model = sys.argv[3] if len(sys.argv) > 3 else "MambaRec"
shares = []
iterate = RankShareLoader.__iter__


def recording(self):
    yield from iterate(self)
    shares.append(self.shares)


RankShareLoader.__iter__ = recording
ranks = ForkedRanks(2)
result = run(model, "ml-tiny", config_dict=config, distributed=ranks)
(out / f"shares-{result['rank']}.json").write_text(json.dumps(shares))
if result["rank"] == 0:
    (out / "result.json").write_text(json.dumps({
        "test": dict(result["test_result"]), "valid": dict(result["best_valid_result"]),
        "checkpoint": result["checkpoint"], "epochs_run": result["epochs_run"]}))
sys.exit(ranks.finish(0))
