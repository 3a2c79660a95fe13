"""An experiment's tables: ``results.csv`` (a row per cell and protocol), ``results.md`` (the
study's tables: per dataset and protocol, rows = context length, columns = models, mean ± std
over seeds, best per row in bold), ``efficiency.md`` (memory and time per model and length) and
``datasets.md`` (the study's Table 1)."""

import csv
import statistics

from recbole_mamba.files import atomic_open

CELL_COLUMNS = ("dataset", "dataset_name", "model", "length", "seed", "status", "eval_mode", "protocol",
                "training")
METRIC_COLUMNS = ("valid_ndcg@10", "valid_hit@10", "test_hit@10", "test_ndcg@10", "test_hit@20", "test_ndcg@20",
                  "test_mrr@10", "test_mrr@20")
COST_COLUMNS = ("parameters", "epochs", "best_epoch", "train_s_per_epoch", "valid_s_per_epoch", "test_s",
                "time_to_best_s", "wall_s", "peak_memory_mb", "memory_kind", "device")
COLUMNS = CELL_COLUMNS + METRIC_COLUMNS + COST_COLUMNS + ("error",)
STATUS_TEXT = {"failed": "failed", "oom": "OOM"}


def result_rows(experiment, records):
    """Rows of ``results.csv``: for each recorded cell (``records``: cell id -> metrics) in grid
    order, one row per protocol of the experiment."""
    rows = []
    for cell in experiment.cells():
        metrics = records.get(cell.id)
        if metrics is None:
            continue
        for mode in experiment.protocols:
            evaluation = (metrics.get("evaluations") or {}).get(mode, {})
            row = {"dataset": cell.label, "dataset_name": cell.dataset, "model": cell.model, "length": cell.length,
                   "seed": cell.seed, "status": metrics["status"], "eval_mode": mode,
                   "protocol": evaluation.get("protocol", ""), "training": metrics.get("training") or "",
                   "error": metrics.get("error") or ""}
            for column in METRIC_COLUMNS:
                split, _, metric = column.partition("_")
                row[column] = (evaluation.get(split) or {}).get(metric)
            row.update({column: metrics.get(column) for column in COST_COLUMNS})
            rows.append(row)
    return rows


def write_csv(path, rows):
    with atomic_open(path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows([{k: ("" if v is None else v) for k, v in row.items()} for row in rows])


def mean_std(values):
    """(mean, sample standard deviation; 0 for one value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def group_rows(rows, dataset, mode=None):
    """{(length, model): [rows]} of one dataset (and protocol)."""
    groups = {}
    for row in rows:
        if row["dataset"] == dataset and (mode is None or row["eval_mode"] == mode):
            groups.setdefault((row["length"], row["model"]), []).append(row)
    return groups


def _summary(group, column):
    """(mean, std, seeds) over the done rows, or the status text of a cell that did not finish."""
    done = [r[column] for r in group if r["status"] == "done" and r[column] is not None]
    if done:
        return mean_std(done) + (len(done),)
    statuses = {r["status"] for r in group}
    return next((STATUS_TEXT[s] for s in ("oom", "failed") if s in statuses), "–")


def _metric_table(experiment, rows, entry, mode, k, oracle=None):
    groups = group_rows(rows, entry.name, mode)
    models = experiment.models
    head = "| length | " + " | ".join(models) + (" | oracle HR@%d |" % k if oracle else " |")
    lines = [head, "|---" * (len(models) + 1 + bool(oracle)) + "|"]
    for length in entry.lengths:
        stats = {m: (_summary(groups.get((length, m), []), f"test_hit@{k}"),
                     _summary(groups.get((length, m), []), f"test_ndcg@{k}")) for m in models}
        best = {}
        for i in (0, 1):
            means = [s[i][0] for s in stats.values() if isinstance(s[i], tuple)]
            best[i] = max(means) if means else None
        cells = []
        for m in models:
            hit, ndcg = stats[m]
            if not isinstance(hit, tuple):  # no seed done: the status
                cells.append(hit)
                continue
            parts = []
            for i, (mean, std, _) in enumerate((hit, ndcg)):
                text = f"{mean:.4f} ± {std:.4f}"
                parts.append(f"**{text}**" if mean == best[i] else text)
            note = f" (n={hit[2]})" if hit[2] != len(experiment.seeds) else ""
            cells.append(f"{parts[0]} / {parts[1]}{note}")
        extra = f" | {oracle(length, k):.4f}" if oracle else ""
        lines.append(f"| {length} | " + " | ".join(cells) + extra + " |")
    return lines


def results_markdown(experiment, rows, oracles=None):
    """``results.md``: for each dataset and protocol, the test HR@k / NDCG@k tables (k = 10, 20)."""
    oracles = oracles or {}
    out = [f"# {experiment.name}: results", ""]
    selected_on = experiment.protocols[0]
    for entry in experiment.datasets:
        for mode in experiment.protocols:
            protocols = sorted({r["protocol"] for r in rows if r["dataset"] == entry.name
                                and r["eval_mode"] == mode and r["protocol"]})
            trainings = sorted({r["training"] for r in rows if r["dataset"] == entry.name and r.get("training")})
            for k in (10, 20):
                seeds = len(experiment.seeds)
                out.append(
                    f"**{entry.name}** — test HR@{k} / NDCG@{k}, mean ± std over {seeds} seed{'s' * (seeds != 1)} "
                    f"(n = seeds done where fewer); {'; '.join(protocols) or mode}; "
                    + "".join(f"trained with {t}; " for t in trainings)
                    + "the checkpoint of each cell "
                    f"selected on its validation metric under {selected_on}. Best per row in bold."
                    + (" Oracle: the best possible HR with that much context (generated data)."
                       if mode == "full" and entry.name in oracles else "")
                )
                out.append("")
                oracle = oracles.get(entry.name) if mode == "full" else None  # a ceiling of full ranking
                out += _metric_table(experiment, rows, entry, mode, k, oracle)
                out.append("")
    return "\n".join(out)


def _mean_text(group, column, fmt):
    value = _summary(group, column)
    return fmt.format(value[0]) if isinstance(value, tuple) else value


def efficiency_markdown(experiment, rows):
    """``efficiency.md``: the study's efficiency table per dataset, mean over seeds."""
    out = [f"# {experiment.name}: efficiency", ""]
    first = experiment.protocols[0]
    for entry in experiment.datasets:
        groups = group_rows(rows, entry.name, first)
        devices = sorted({r["device"] for g in groups.values() for r in g if r["device"]})
        kinds = sorted({r["memory_kind"] for g in groups.values() for r in g if r["memory_kind"]})
        out += [f"**{entry.name}** — mean over seeds; memory: {', '.join(kinds) or '–'} of each cell's own process; "
                f"device: {'; '.join(devices) or '–'}; evaluation: the test split, {first}.", "",
                "| length | model | parameters | peak memory (MiB) | train s / epoch | eval s (test) | epochs "
                "| time to best (s) |", "|---|---|---|---|---|---|---|---|"]
        for length in entry.lengths:
            for model in experiment.models:
                group = groups.get((length, model), [])
                out.append(
                    f"| {length} | {model} | {_mean_text(group, 'parameters', '{:,.0f}')} "
                    f"| {_mean_text(group, 'peak_memory_mb', '{:,.0f}')} "
                    f"| {_mean_text(group, 'train_s_per_epoch', '{:.2f}')} | {_mean_text(group, 'test_s', '{:.2f}')} "
                    f"| {_mean_text(group, 'epochs', '{:.1f}')} | {_mean_text(group, 'time_to_best_s', '{:.1f}')} |"
                )
        out.append("")
    return "\n".join(out)


def datasets_markdown(experiment, records, notes=None):
    """``datasets.md``: users, items, interactions, average / median / max sequence length of every
    dataset the grid loaded (as RecBole loaded it: after its filters)."""
    notes = notes or {}
    seen = {}
    for cell in experiment.cells():
        stats = (records.get(cell.id) or {}).get("dataset_stats")
        if stats and cell.dataset not in seen:
            seen[cell.dataset] = stats
    out = [f"# {experiment.name}: datasets", "",
           "| dataset | users | items | interactions | average length | median length | max length |",
           "|---|---|---|---|---|---|---|"]
    for name, s in seen.items():
        out.append(f"| {name} | {s['users']:,} | {s['items']:,} | {s['interactions']:,} | {s['avg_seq_len']:.1f} "
                   f"| {s['median_seq_len']:.1f} | {s['max_seq_len']:,} |")
    out.append("")
    for label, note in notes.items():
        out += [f"{label}: {note}", ""]
    return "\n".join(out)
