"""``run()``: config -> data -> model -> fit -> evaluate, as RecBole's ``run_recbole``, and
``load_run()``: checkpoint -> config, data, model -> evaluate, as RecBole's
``load_data_and_model``; both with the plugin's config, model registry and weights-only
checkpoints."""

import copy
import logging
import os
import sys
import time
from contextlib import contextmanager, nullcontext
from logging import getLogger

from recbole.data import data_preparation
from recbole.data.transform import construct_transform
from recbole.utils import get_environment, get_flops, init_logger, init_seed, set_color

from recbole_mamba.atomics.tokens import Utf8Tokens
from recbole_mamba.config import ConfigError, RecboleMambaConfig
from recbole_mamba.distributed import DistributedContext, DistributedTrainer, ForkedRanks, shard_evaluation
from recbole_mamba.distributed.trainer import check_distributable
from recbole_mamba.errors import RankLostError
from recbole_mamba.data import create_dataset
from recbole_mamba.data.candidates import CandidateEvalDataLoader
from recbole_mamba.data.history import attach_history, history_to_exclude
from recbole_mamba.data.length_batches import LengthGroupedTrainDataLoader
from recbole_mamba.data.positions import warn_untrained_positions
from recbole_mamba.data.stats import dataset_statistics
from recbole_mamba.model.chunked_ce import measured_seconds_per_logit
from recbole_mamba.model.losses import SAMPLED_LOSSES
from recbole_mamba.model.negatives import POPULARITY
from recbole_mamba.trainer import SafeCheckpointTrainer, checkpoint_parameters, load_checkpoint
from recbole_mamba.trainer.checkpoint import token_tensors
from recbole_mamba.trainer.resume import find_resume_file
from recbole_mamba.trainer.all_positions import build_model, scores_by_dot_product
from recbole_mamba.trainer.memory import check_memory
from recbole_mamba.trainer.ranking import RankingCollector, test_eval_mode
from recbole_mamba.train_modes import ALL_POSITIONS, ALL_POSITIONS_ABOVE, AUTO


def evaluation_protocol(config):
    """Human-readable protocol of the test metrics, e.g. 'full ranking, leave-one-out by time'."""
    mode = test_eval_mode(config)
    if mode == "full":
        ranking = "full ranking"
    elif mode.startswith("uni"):
        ranking = f"{mode[3:]} uniformly sampled negatives"
    elif mode.startswith("pop"):
        ranking = f"{mode[3:]} popularity-sampled negatives"
    else:
        ranking = mode
    split = config["eval_args"]["split"]
    order = config["eval_args"]["order"]
    if "LS" in split:
        how = "leave-one-out" + (" by time" if order == "TO" else "")
    else:
        how = f"split {split}, order {order}"
    masked = ", history items masked" if config["exclude_history"] else ", no history masking"
    return f"{ranking}, {how}{masked}"


def training_protocol(config):
    """Human-readable loss of training, e.g. 'SSM: sampled softmax over the positive and 256
    uniform negatives shared by each batch, at every position'."""
    loss_type = config["loss_type"]
    if not scores_by_dot_product(config.model_class):
        return f"{config['model']}'s own loss ({loss_type})"
    at = ", at every position" if config["train_mode"] == ALL_POSITIONS else ", at each row's last position"
    if config["train_mode"] == ALL_POSITIONS or loss_type not in SAMPLED_LOSSES:
        distribution = config["train_negatives_distribution"]
    else:  # RecBole's sampler puts one negative in each row
        distribution = (config["train_neg_sample_args"] or {}).get("distribution", "uniform")
    if loss_type == "CE":
        how = "exact softmax over all items"
    elif loss_type == "SSM":
        how = (f"sampled softmax over the positive and {config['train_negatives']} {distribution} negatives "
               "shared by each batch" + (", log-Q corrected" if distribution == POPULARITY else ""))
    elif loss_type == "GBCE":
        how = f"gBCE (t {config['gbce_t']}) over {config['train_negatives']} {distribution} negatives shared by each batch"
    else:
        how = f"one {distribution} negative per position"
    return f"{loss_type}: {how}{at}"


def check_sampled_evaluation(config, dataset):
    """Sampled evaluation (uniN/popN) needs N negatives besides the positive among the items, and
    at least as many candidates (N + 1) as the largest ``topk``."""
    for phase in ("valid", "test"):
        mode = config["eval_args"]["mode"][phase]
        if mode[:3] not in ("uni", "pop"):
            continue
        if int(mode[3:]) > dataset.item_num - 2:
            raise ConfigError(
                f"eval_args mode {mode} samples {mode[3:]} negatives, but {config['dataset']} has only "
                f"{dataset.item_num - 1} items; use a smaller number or mode full"
            )
        if int(mode[3:]) + 1 < max(config["topk"]):
            raise ConfigError(f"eval_args mode {mode} ranks {int(mode[3:]) + 1} items, fewer than topk "
                              f"{max(config['topk'])}; use more negatives or a smaller topk")


def check_splits(config, loaders, statistics):
    """Every split has rows: a dataset too small for the protocol is refused before training, in
    one line saying what it has and what the protocol needs."""
    sizes = dict(zip(("training", "valid", "test"), (len(loader._dataset) for loader in loaders), strict=True))
    if all(sizes.values()):
        return
    split = config["eval_args"]["split"]
    need = ("leave-one-out gives a user training, valid and test rows from 4 interactions on (the first "
            "has no history)" if "LS" in split else f"the split {split} needs rows in each part")
    raise ConfigError(
        f"{config['dataset']} is too small for its protocol: {', '.join(f'{n:,} {name}' for name, n in sizes.items())} "
        f"rows from {statistics['users']:,} users of at most {statistics['max_seq_len']:,} interactions "
        f"and {statistics['items']:,} items; {need}")


def encode_once(config, loader):
    """``loader``, or for sampled evaluation of a dot-product model under top-k metrics its
    :class:`CandidateEvalDataLoader` (each row encoded once, not once per candidate)."""
    if (CandidateEvalDataLoader.replaces(loader) and scores_by_dot_product(config.model_class)
            and RankingCollector(config).can_collect_ranked()):
        return CandidateEvalDataLoader.of(loader)
    return loader


SLOW_EPOCH_SECONDS = 3600  # an exact softmax that takes longer an epoch is not run unasked
SLOWEST_SECONDS_PER_LOGIT = 100e-9  # a device this slow is not assumed (this project's 2-core VM: 10e-9)


class SlowLossError(ConfigError):
    """An exact softmax (the model's default loss) that would take hours an epoch."""


def check_exact_softmax_cost(config, model, train_dataset, logger):
    """Refuse, before training, an exact CE over the catalogue that is the model's default (not
    asked for) and would take more than an hour an epoch on this device, timed here
    (:func:`~recbole_mamba.model.chunked_ce.measured_seconds_per_logit`); where CE was asked for
    (``--loss_type=CE``), warn and go on. E.g. 1.2 M items and 2 M training positions take about
    7 hours an epoch on a 2-core CPU, a sampled softmax minutes. An epoch of fewer logits than an
    hour at :data:`SLOWEST_SECONDS_PER_LOGIT` is not timed."""
    if config["loss_type"] != "CE" or not scores_by_dot_product(type(model)):
        return
    if config["train_mode"] == ALL_POSITIONS:
        positions = int(train_dataset.inter_feat[train_dataset.item_list_length_field].sum())
    else:
        positions = len(train_dataset)
    logits = positions * model.n_items
    if logits * SLOWEST_SECONDS_PER_LOGIT < SLOW_EPOCH_SECONDS:
        return
    device = config["device"]
    per_logit = measured_seconds_per_logit(model.item_embedding.weight.size(1), device)
    seconds = logits * per_logit
    if seconds <= SLOW_EPOCH_SECONDS:
        return
    cost = (f"an exact softmax over {model.n_items:,} items at {positions:,} training positions takes about "
            f"{seconds / 3600:.1f} h an epoch on {device} (timed here: {per_logit * 1e9:.1f} ns a position x item)")
    sampled = f"--loss_type=SSM trains a sampled softmax over train_negatives {config['train_negatives']} items"
    if config.source_of("loss_type") == "given":
        logger.warning(f"loss_type CE: {cost}; {sampled} in a fraction of that")
        return
    raise SlowLossError(f"loss_type CE ({config['model']}'s default, from {config.source_of('loss_type')}): {cost}; "
                        f"{sampled}, --loss_type=CE runs it as asked")


@contextmanager
def parameters_shared_on_copy(model):
    """Within it, ``copy.deepcopy(model)`` copies the modules but shares the parameters. RecBole's
    ``get_flops`` profiles a deep copy (its counters and hooks go on the copy's modules); with the
    parameters copied too, the copy held a second item table (4.9 GiB at 2 x 10^7 items) until the
    collector found its cycles: measured in the training epoch of the KuaiRand-27K shape."""
    def shared_copy(memo):
        del model.__deepcopy__
        try:
            memo.update({id(parameter): parameter for parameter in model.parameters()})
            return copy.deepcopy(model, memo)
        finally:
            model.__deepcopy__ = shared_copy

    model.__deepcopy__ = shared_copy
    try:
        yield model
    finally:
        del model.__deepcopy__


DENSE_TABLE_NOTICE_ITEMS = 1_000_000  # from here dense Adam's full-table update is most of a CPU step


def warn_dense_table(logger, config, model):
    """One line where a sampled loss trains with dense item-table updates over 10^6 items or
    more: Adam reads and writes every row at every step, though the loss reads a few."""
    if (config["item_table_updates"] != "dense" or config["loss_type"] == "CE" or model.n_items is None
            or not scores_by_dot_product(type(model)) or model.n_items < DENSE_TABLE_NOTICE_ITEMS):
        return
    touched = 4 * model.item_embedding.weight.numel() * 4  # weight, gradient, Adam's two moments
    logger.warning(f"item_table_updates dense: Adam reads and writes all {model.n_items:,} item rows at every step "
                   f"({touched / 1e9:.1f} GB of weights, gradients and moments a step) while loss_type "
                   f"{config['loss_type']} reads a batch's rows; --item_table_updates=sparse updates those only")


def host_memory_parts(data, item_tokens):
    """What the run will bring into this process's resident memory that is not there when its
    memory is estimated: the interaction store's pages, which training reads (memory-mapped), and
    the item tokens every checkpoint holds (a store's: mapped, read as a checkpoint is written)."""
    parts = {"item tokens, in checkpoints": sum(t.numel() * t.element_size() for t in item_tokens.values())}
    store = getattr(data, "store", None)
    if store is not None:
        parts["interaction store, paged in by training"] = store.items.nbytes + store.offsets.nbytes
    return parts


def _log_run(config, logger):
    """The run's config and how it trains, to the log."""
    logger.info(sys.argv)
    logger.info(config)
    if config.dataset_requested:
        logger.info(set_color("dataset", "blue") + f": {config.dataset_requested!r} is {config['dataset']}")
    how = (f" ({AUTO}: {ALL_POSITIONS} above MAX_ITEM_LIST_LENGTH {ALL_POSITIONS_ABOVE})"
           if config.train_mode_chosen_automatically else "")
    logger.info(set_color("MAX_ITEM_LIST_LENGTH", "blue")
                + f": {config['MAX_ITEM_LIST_LENGTH']} ({config.source_of('MAX_ITEM_LIST_LENGTH')})")
    logger.info(set_color("train_mode", "blue") + f": {config['train_mode']}{how}")
    logger.info(set_color("training loss", "blue") + f": {training_protocol(config)}")
    if config["train_mode"] == ALL_POSITIONS:
        logger.info(
            set_color("train batches", "blue") + f": {config['train_batch_size']} windows "
            + (f"(train_batch_tokens {config['train_batch_tokens']} / MAX_ITEM_LIST_LENGTH "
               f"{config['MAX_ITEM_LIST_LENGTH']})" if config.train_batch_from_tokens else "(train_batch_size)")
            + f", train_windows {config['train_windows']}, train_batch_order {config['train_batch_order']}"
        )


def _build_data(config, logger):
    """Dataset and dataloaders of ``config``: returns (dataset, (train, valid, test dataloaders),
    the dataset's statistics before the split)."""
    data = create_dataset(config)
    logger.info(data)
    check_sampled_evaluation(config, data)
    history = history_to_exclude(config, data)
    statistics = dataset_statistics(data)  # before the split: RecBole's augmentation drops each first item
    train_data, valid_data, test_data = data_preparation(config, data)
    check_splits(config, (train_data, valid_data, test_data), statistics)
    if config["train_mode"] == ALL_POSITIONS and config["train_batch_order"] == "length":
        train_data = LengthGroupedTrainDataLoader(config, train_data._dataset, train_data._sampler)
        logger.info(set_color("train batches", "blue") + f": {train_data.describe()}")
    attach_history(history, valid_data, test_data)
    valid_data, test_data = (encode_once(config, loader) for loader in (valid_data, test_data))
    return data, (train_data, valid_data, test_data), statistics


def _build_model(config, loaders, logger):
    """The model of ``config``, initialised from its seed (the same on every rank)."""
    train_data, valid_data, test_data = loaders
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    recommender = build_model(config.model_class, config, train_data._dataset).to(config["device"])
    logger.info(recommender)
    warn_untrained_positions(logger, config, recommender, train_data._dataset, valid_data._dataset,
                             test_data._dataset)
    warn_dense_table(logger, config, recommender)
    return recommender


def _build(config):
    """Logger, data and model of ``config`` in one process: returns (dataset, (train, valid, test
    dataloaders), model, the dataset's statistics before the split)."""
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    _log_run(config, logger)
    data, loaders, statistics = _build_data(config, logger)
    return data, loaders, _build_model(config, loaders, logger), statistics


def _join(context, config):
    """Start ``context``'s rank of a distributed run on ``config``'s device: only rank 0 logs (the
    others' log records below errors are dropped, and no log file is theirs) and shows progress."""
    config["device"] = context.device(config["device"])
    context.start(config["device"], timeout_s=config["dist_timeout"])
    if not context.is_main:
        config["show_progress"] = False
        root = logging.getLogger()
        for handler in list(root.handlers):
            if isinstance(handler, logging.FileHandler):  # a forked rank's copy of rank 0's log file
                root.removeHandler(handler)
        root.setLevel(logging.ERROR)
    return context


def _refused_together(context, check):
    """``check()``; in a distributed run on every rank at once (:meth:`DistributedContext.refused_together`)."""
    if context is None:
        check()
    else:
        context.refused_together(check)


def run(
    model,
    dataset,
    config_file_list=None,
    config_dict=None,
    saved=True,
    cmd_args=(),
    epoch_callback=None,
    resume=None,
    distributed=None,
):
    """Train ``model`` on ``dataset`` and test the best validation checkpoint.

    ``model`` is a name (the plugin's or RecBole's) or a model class; ``cmd_args`` are
    ``--key=value`` overrides with the highest priority; ``epoch_callback(epoch, valid_score,
    valid_result)`` is called after each validation. Returns a dict with ``best_valid_score``,
    ``valid_score_bigger``, ``best_valid_result``, ``test_result``, ``protocol`` (of the test
    metrics), ``training`` (the loss and its negatives), ``config``,
    ``epochs_run``, ``checkpoint``, and the run's costs and data: ``parameters`` (trainable),
    ``train_seconds`` (per epoch), ``evaluations`` (per validation: epoch, valid_s, valid_score,
    elapsed_s), ``best_evaluation`` (the one kept), ``test_seconds``, ``dataset_stats`` and
    ``rank`` (0, or this process's rank of a distributed run).

    ``resume``: a run's resume state (``saved/<model>-<time>-last.pth``, its best checkpoint, or the
    folder holding them): the run continues after its last evaluated epoch with the config it was
    started with (``model``, ``dataset`` and ``config_file_list`` are taken from the state;
    ``config_dict`` and ``cmd_args`` go on top), and ends as it would have without the interruption.

    ``distributed``: the rank this process is of a run on many
    (:class:`~recbole_mamba.distributed.DistributedContext`; by default the one torchrun's
    environment describes, if any), or :class:`~recbole_mamba.distributed.ForkedRanks` to fork
    this machine's ranks once the data is loaded (``--nproc``). Every rank returns the same result.
    """
    launcher = distributed if distributed is not None else DistributedContext.from_env()
    state = None
    if resume is not None:
        resume_file = find_resume_file(str(resume))
        state = load_checkpoint(resume_file)
        model, dataset, config_file_list = state["model"], state["dataset"], None
        config_dict = {**checkpoint_parameters(str(resume), state), **(config_dict or {})}
        world = 1 if launcher is None else launcher.world_size
        if state.get("world_size", 1) != world:
            raise ConfigError(f"{resume_file} was written by a run of {state.get('world_size', 1)} rank(s); "
                              f"this one has {world}: resume it on as many (the batches each rank takes and "
                              "its random generators are theirs)")
    config = RecboleMambaConfig(
        model=model,
        dataset=dataset,
        config_file_list=config_file_list,
        config_dict=config_dict,
        cmd_args=cmd_args,
    )
    if launcher is not None:
        check_distributable(config)
    context = _join(launcher, config) if isinstance(launcher, DistributedContext) else None
    try:
        result = _run(config, launcher, context, saved, epoch_callback, state, resume_file if state else None)
    except Exception as error:
        context = context or getattr(launcher, "context", None)
        if context is not None and context.is_collective_failure(error):
            lost = RankLostError(context.describe_loss(error))
            lost.resume_file = getattr(error, "resume_file", None)
            raise lost from None
        raise
    if launcher is not None:
        (context or launcher.context).stop()
    return result


def _run(config, launcher, context, saved, epoch_callback, state, resume_file):
    """:func:`run` once its config is built (and a launched rank has joined the others)."""
    init_seed(config["seed"], config["reproducibility"])
    if context is None or context.is_main:
        init_logger(config)
    logger = getLogger()
    _log_run(config, logger)
    with context.main_first() if context is not None else nullcontext():  # rank 0 writes a missing store
        data, (train_data, valid_data, test_data), statistics = _build_data(config, logger)
    if isinstance(launcher, ForkedRanks):
        context = _join(launcher.fork(config["device"]), config)
    if context is not None:
        valid_data, test_data = (shard_evaluation(loader, context.rank, context.world_size)
                                 for loader in (valid_data, test_data))
    recommender = _build_model(config, (train_data, valid_data, test_data), logger)
    _refused_together(context, lambda: check_exact_softmax_cost(config, recommender, train_data._dataset, logger))
    item_tokens = data.field2id_token[data.iid_field]  # a store's Utf8Tokens, or RecBole's array of str
    if not isinstance(item_tokens, Utf8Tokens):
        item_tokens = Utf8Tokens.from_strings(item_tokens)
    if config["check_memory"]:
        share = 1 if context is None else 1 / context.local_world_size  # of this machine's memory
        _refused_together(context, lambda: check_memory(
            config, recommender, logger, eval_loaders=(valid_data, test_data),
            host_parts=host_memory_parts(data, token_tensors(item_tokens)), share=share))
    with parameters_shared_on_copy(recommender):  # RecBole's count profiles a deep copy of the model
        flops = get_flops(recommender, data, config["device"], logger, construct_transform(config))
    logger.info(set_color("FLOPs", "blue") + f": {flops}")

    trainer = (SafeCheckpointTrainer(config, recommender) if context is None
               else DistributedTrainer(config, recommender, context))
    trainer.item_tokens = item_tokens
    epochs_run = 0
    if state is not None:
        trainer.resume(state, resume_file)
        epochs_run = trainer.start_epoch

    def after_validation(epoch_idx, valid_score):
        nonlocal epochs_run
        epochs_run = epoch_idx + 1
        if epoch_callback is not None:
            epoch_callback(epoch_idx, valid_score, trainer.last_valid_result)

    try:
        best_valid_score, best_valid_result = trainer.fit(
            train_data, valid_data, saved=saved, show_progress=config["show_progress"],
            callback_fn=after_validation,
        )
    except BaseException as stopped:  # Ctrl-C, a lost rank: where the last completed epoch's state is
        stopped.resume_file = trainer.resume_file if saved and os.path.exists(trainer.resume_file) else None
        raise
    trainer.end_training()
    start = time.perf_counter()
    test_result = trainer.evaluate(
        test_data, load_best_model=saved, show_progress=config["show_progress"]
    )
    test_seconds = time.perf_counter() - start
    if saved:  # finished: nothing to resume
        trainer.discard_resume_state()
    if logger.isEnabledFor(logging.INFO):  # RecBole's table samples the CPU load for a second
        logger.info(
            "The running environment of this training is as follows:\n"
            + get_environment(config).draw()
        )
    protocol = evaluation_protocol(config)
    logger.info(set_color("protocol", "yellow") + f": {protocol}")
    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    return {
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
        "protocol": protocol,
        "training": training_protocol(config),
        "config": config,
        "checkpoint": os.path.abspath(trainer.saved_model_file) if saved else None,
        "epochs_run": epochs_run,
        "parameters": sum(p.numel() for p in recommender.parameters() if p.requires_grad),
        "train_seconds": list(trainer.train_seconds),
        "evaluations": list(trainer.evaluations),
        "best_evaluation": trainer.best_evaluation(),
        "test_seconds": test_seconds,
        "dataset_stats": statistics,
        "rank": 0 if context is None else context.rank,
    }


def load_run(checkpoint, config_dict=None, cmd_args=()):
    """Rebuild config, dataset and model from ``checkpoint`` alone (weights-only) and evaluate it
    on the validation and test rows of the dataset it was trained on; ``config_dict`` /
    ``cmd_args`` go on top of the stored parameters (e.g. another ``data_path`` or ``use_gpu``).

    Returns a dict as :func:`run`'s, with ``valid_result`` (this evaluation) in place of
    ``best_valid_result``, and ``model`` (the loaded model, in eval mode).
    """
    path = str(checkpoint)
    state = load_checkpoint(path)
    parameters = checkpoint_parameters(path, state)
    config = RecboleMambaConfig(state["model"], state["dataset"], config_dict={**parameters, **(config_dict or {})},
                                cmd_args=cmd_args)
    _, (_, valid_data, test_data), recommender, _ = _build(config)
    trainer = SafeCheckpointTrainer(config, recommender)
    trainer.load_weights(state)
    show = config["show_progress"]
    valid_result = trainer.evaluate(valid_data, load_best_model=False, show_progress=show)
    test_result = trainer.evaluate(test_data, load_best_model=False, show_progress=show)
    protocol = evaluation_protocol(config)
    logger = getLogger()
    logger.info(set_color("protocol", "yellow") + f": {protocol}")
    logger.info(set_color("valid result", "yellow") + f": {valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    return {
        "valid_result": valid_result,
        "test_result": test_result,
        "protocol": protocol,
        "config": config,
        "model": recommender.eval(),
        "checkpoint": os.path.abspath(checkpoint),
    }
