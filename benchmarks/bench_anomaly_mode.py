"""What RecBole's import-time anomaly detection costs, and so what the plugin saves by undoing it.

RecBole 1.2.1's ``sine.py`` calls ``torch.autograd.set_detect_anomaly(True)`` when
``recbole.model.sequential_recommender`` is imported; the plugin imports it through
``registry.recbole_sequential_package()``, which restores the previous mode. This times the same
training steps (ml-100k, prefix rows, batch 256, MAX_ITEM_LIST_LENGTH 50) of SASRec and MambaRec
with anomaly detection off and on, side by side in one process, and prints the ratios.
``python benchmarks/bench_anomaly_mode.py [--steps 20]``
"""

import argparse
import os
import statistics
import tempfile
import time
import warnings

import torch


def step_seconds(model, batches):
    optimizer = torch.optim.Adam(model.parameters())
    times = []
    for batch in batches:
        start = time.perf_counter()
        loss = model.calculate_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    from recbole.data import data_preparation

    from recbole_mamba.config import RecboleMambaConfig
    from recbole_mamba.data import create_dataset
    from recbole_mamba.registry import get_model, recbole_sequential_models

    recbole_sequential_models()  # imports RecBole's models, as every run of the plugin does
    os.chdir(tempfile.mkdtemp())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; anomaly mode now "
          f"{torch.is_anomaly_enabled()} (after importing RecBole's models through the registry)")
    for name in ("SASRec", "MambaRec"):
        config = RecboleMambaConfig(name, "ml-100k", config_dict={"state": "ERROR", "show_progress": False})
        train, _, _ = data_preparation(config, create_dataset(config))
        batches = [batch for _, batch in zip(range(args.steps), train)]
        model = get_model(name)(config, train._dataset)
        off = step_seconds(model, batches)
        with torch.autograd.detect_anomaly():
            on = step_seconds(model, batches)
        print(f"{name}: training step {off * 1e3:.0f} ms without anomaly detection, {on * 1e3:.0f} ms with it, "
              f"ratio {on / off:.2f}x")


if __name__ == "__main__":
    main()
