"""An experiment's plots (matplotlib, PNG): per dataset, test HR@10 and NDCG@10, seconds per
training epoch and peak memory against context length (log scale), one line per model, mean
over seeds with the standard deviation as error bars; cells that did not finish are left out."""

import os

from recbole_mamba.experiment.report import group_rows, mean_std
from recbole_mamba.files import atomic_path

PLOTS = (  # (file suffix, column, axis label)
    ("ndcg10", "test_ndcg@10", "test NDCG@10"),
    ("hr10", "test_hit@10", "test HR@10"),
    ("train_time", "train_s_per_epoch", "seconds per training epoch"),
    ("memory", "peak_memory_mb", "peak memory (MiB)"),
)


def write_plots(experiment, rows, folder, oracles=None):
    """Write ``<dataset>_<plot>.png`` into ``folder`` (the HR@10 plot of a generated dataset with its
    oracle, ``oracles[name](length, k)``, under full ranking); returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(folder, exist_ok=True)
    first = experiment.protocols[0]
    paths = []
    for entry in experiment.datasets:
        groups = group_rows([r for r in rows if r["status"] == "done"], entry.name, first)
        if not groups:
            continue
        protocol = next((r["protocol"] for g in groups.values() for r in g if r["protocol"]), first)
        for suffix, column, label in PLOTS:
            fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
            for model in experiment.models:
                points = []
                for length in entry.lengths:
                    values = [r[column] for r in groups.get((length, model), []) if r[column] is not None]
                    if values:
                        points.append((length, *mean_std(values)))
                if points:
                    xs, ys, errs = zip(*points, strict=True)
                    ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=model)
            oracle = (oracles or {}).get(entry.name)
            if suffix == "hr10" and oracle and first == "full":
                ax.plot(entry.lengths, [oracle(n, 10) for n in entry.lengths], "k--", label="oracle")
            ax.set_xscale("log")
            ax.set_xticks(entry.lengths)
            ax.set_xticklabels([str(n) for n in entry.lengths])
            ax.minorticks_off()
            ax.set_xlabel("context length (MAX_ITEM_LIST_LENGTH)")
            ax.set_ylabel(label)
            ax.set_title(f"{entry.name}: {label}\n{protocol}", fontsize=9)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
            fig.tight_layout()
            path = os.path.join(folder, f"{entry.name}_{suffix}.png")
            with atomic_path(path, suffix=".png") as tmp:
                fig.savefig(tmp, format="png")
            plt.close(fig)
            paths.append(path)
    return paths
