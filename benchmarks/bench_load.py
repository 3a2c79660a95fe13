"""Seconds and peak RSS to load a converter-written atomic file, RecBole's loader against the
plugin's (:mod:`recbole_mamba.data.atomic_loading`), side by side, scaled to 10 M interactions.

A KuaiRand-shaped dataset (users of ``--length`` interactions one minute apart, items from a power
law over ``--items``) is written by the converters' own writer, then loaded in a fresh process per
loader and size as a run loads it for all-position training (``WindowDataset``, then RecBole's
split): seconds of the load, and the process's peak RSS less that of a process that imported the
same modules and loaded nothing. Both datasets are checked equal (every field of the rows, the id
maps) before anything is printed.

``python benchmarks/bench_load.py [--interactions 2000000 10000000] [--work DIR]``
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recbole_mamba.atomics.writer import write_dataset  # noqa: E402

GIB = 1 << 30
LOADERS = ("recbole", "plugin")

CHILD = r"""
import json, resource, sys, time, warnings
warnings.filterwarnings("ignore")
import torch
from recbole.data import data_preparation
from recbole.data.dataset import SequentialDataset
from recbole_mamba.config import RecboleMambaConfig
from recbole_mamba.data import WindowDataset

class RecBoleLoadedWindows(WindowDataset):
    _load_feat = SequentialDataset._load_feat
    _filter_by_inter_num = SequentialDataset._filter_by_inter_num

data_path, name, loader, out = sys.argv[1:5]
config = RecboleMambaConfig("MambaRec", name, config_dict={
    "data_path": data_path, "MAX_ITEM_LIST_LENGTH": 2000, "loss_type": "SSM", "state": "ERROR"})
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if loader == "none":
    json.dump({"base_kib": base}, open(out, "w"))
    sys.exit()
start = time.perf_counter()
dataset = (RecBoleLoadedWindows if loader == "recbole" else WindowDataset)(config)
train, valid, test = data_preparation(config, dataset)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # before the comparison's copy below
rows = dataset.inter_feat
torch.save({"rows": {k: rows[k] for k in rows.columns}, "history": dataset.history_sources,
            "tokens": {f: [str(t) for t in dataset.field2id_token[f]] for f in (dataset.uid_field, dataset.iid_field)}},
           out + ".pt")
json.dump({"seconds": seconds, "peak_kib": peak,
           "base_kib": base, "interactions": int(len(dataset.history_sources[dataset.item_id_list_field]))},
          open(out, "w"))
"""


def write_log(data_path, interactions, length=2003, items=4_370_000, exponent=0.66, seed=0):
    """A converter-format dataset of ``interactions`` rows; returns its name."""
    name = f"load-{interactions}"
    if (Path(data_path) / name / f"{name}.inter").is_file():
        return name
    rng = np.random.default_rng(seed)
    user = np.arange(interactions) // length
    scale = items ** (1 - exponent) - 1
    item = np.minimum(((scale * rng.random(interactions) + 1) ** (1 / (1 - exponent))).astype(np.int64), items)
    time = 1_650_000_000 + 60 * (np.arange(interactions) % length)
    write_dataset(data_path, name, [("user_id:token", user), ("item_id:token", item), ("timestamp:float", time)],
                  {"interactions": interactions})
    return name


def load(data_path, name, loader, work):
    out = str(Path(work) / f"{name}-{loader}.json")
    subprocess.run([sys.executable, "-c", CHILD, data_path, name, loader, out], check=True, cwd=ROOT)
    return json.loads(Path(out).read_text())


def check_equal(work, name):
    import torch

    a, b = (torch.load(Path(work) / f"{name}-{loader}.json.pt") for loader in LOADERS)
    assert a["tokens"] == b["tokens"], "id maps differ"
    for part in ("rows", "history"):
        assert a[part].keys() == b[part].keys(), f"{part}: fields differ"
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part} {key} differs"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, nargs="+", default=[2_000_000, 10_000_000])
    parser.add_argument("--work", default=None)
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="bench_load-")
    data_path = str(Path(work) / "atomics")
    base = load(data_path, write_log(data_path, args.interactions[0]), "none", work)["base_kib"]
    print(f"loading for all-position training (WindowDataset + RecBole's split), {work}; "
          f"peak RSS above a process with the same imports ({base / (1 << 20):.2f} GiB)")
    for n in args.interactions:
        name = write_log(data_path, n)
        measured = {loader: load(data_path, name, loader, work) for loader in LOADERS}
        check_equal(work, name)
        per = 10_000_000 / n
        cells = []
        for loader in LOADERS:
            m = measured[loader]
            extra = (m["peak_kib"] - base) * 1024 / GIB
            cells.append(f"{loader} {m['seconds']:.1f} s, {extra:.2f} GiB "
                         f"(per 10 M: {m['seconds'] * per:.0f} s, {extra * per:.1f} GiB)")
        r, p = measured["recbole"], measured["plugin"]
        print(f"{n:,} interactions: " + "; ".join(cells)
              + f"; plugin / recbole time {p['seconds'] / r['seconds']:.2f}x, same dataset")


if __name__ == "__main__":
    main()
