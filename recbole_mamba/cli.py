"""Command line: ``python run_recbole_mamba.py [--model=M] [--dataset=D] [--config_files="a.yaml b.yaml"]
[--key=value ...]``, RecBole's ``run_recbole.py`` conventions."""

import os
import sys

from recbole_mamba.allocator import keep_large_allocations
from recbole_mamba.config import (
    EMBEDDED_DATASET,
    ConfigError,
    available_datasets,
    default_data_path,
    parse_cmd_args,
)
from recbole_mamba.registry import UnknownModelError, model_names

DEFAULT_MODEL = "MambaRec"
MAIN_OPTIONS = [
    ("model", f"model name (default {DEFAULT_MODEL})"),
    ("dataset", f"dataset name (default {EMBEDDED_DATASET})"),
    ("config_files", 'space-separated yaml files, e.g. --config_files="a.yaml b.yaml"'),
    ("epochs", "maximum training epochs (early stopping on valid_metric)"),
    ("train_batch_size", "training batch size"),
    ("learning_rate", "Adam learning rate"),
    ("MAX_ITEM_LIST_LENGTH", "context length: the last N items of each user"),
    ("hidden_size / n_layers / dropout_prob", "model size and regularisation"),
    ("mamba_backend", "auto | cuda | torch | ref (selective-scan backend)"),
    ("eval_args", "e.g. \"{'mode': 'uni100'}\" for 100 sampled negatives (default full ranking)"),
    ("data_path", f"folder of converted datasets (default {default_data_path()})"),
    ("use_gpu / gpu_id", "device selection, as in RecBole"),
    ("show_progress", "progress bars (True/False)"),
]


def usage():
    plugin, recbole_models = model_names()
    options = "\n".join(f"  --{name}=...{' ' * max(1, 38 - len(name))}{text}" for name, text in MAIN_OPTIONS)
    return (
        "usage: python run_recbole_mamba.py [--model=NAME] [--dataset=NAME] "
        '[--config_files="a.yaml b.yaml"] [--key=value ...]\n\n'
        "Trains a sequential recommender with RecBole and prints the best validation and the test "
        "metrics.\nAny RecBole config key can be given as --key=value (highest priority), after "
        "the yaml files.\n\n"
        f"plugin models:\n  {', '.join(plugin)}\n"
        f"RecBole sequential models:\n  {', '.join(recbole_models)}\n"
        f"datasets (embedded {EMBEDDED_DATASET}, and folders of {default_data_path()}):\n"
        f"  {', '.join(available_datasets())}\n\n"
        f"main options:\n{options}\n"
    )


def format_result(result, model, dataset):
    """The printed summary: one table of the test metrics, and the best validation metrics."""
    test = result["test_result"] or {}
    names, ks = [], []
    for key in test:
        name, _, k = key.partition("@")
        if name not in names:
            names.append(name)
        if k not in ks:
            ks.append(k)
    lines = [f"{model} on {dataset} — test, {result['protocol']}"]
    lines.append(" " * 8 + "".join(f"{'@' + k:>10}" for k in ks))
    for name in names:
        cells = "".join(f"{test.get(f'{name}@{k}', float('nan')):>10.4f}" for k in ks)
        lines.append(f"{name:<8}{cells}")
    valid = result["best_valid_result"] or {}
    lines.append(
        "best valid: " + ", ".join(f"{key} {value:.4f}" for key, value in valid.items())
    )
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(arg in ("-h", "--help") for arg in argv):
        print(usage())
        return 0
    try:
        args = parse_cmd_args(argv)
        model = args.pop("model", DEFAULT_MODEL)
        dataset = args.pop("dataset", EMBEDDED_DATASET)
        config_files = args.pop("config_files", "").split()
        for path in config_files:
            if not os.path.isfile(path):
                raise ConfigError(f"config file not found: {path}")
        from recbole_mamba.quick_start import run

        keep_large_allocations()
        result = run(
            model,
            dataset,
            config_file_list=config_files or None,
            cmd_args=[f"--{key}={value}" for key, value in args.items()],
        )
    except (ConfigError, UnknownModelError) as e:
        print(f"run_recbole_mamba.py: error: {e}", file=sys.stderr)
        return 2
    print(format_result(result, model, dataset))
    return 0
