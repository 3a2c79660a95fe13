"""RecBole's Trainer with weights-only checkpoints (see :mod:`recbole_mamba.trainer.checkpoint`)."""

import itertools
import math
import os
import time
import uuid

import torch
from recbole.trainer import Trainer
from recbole.utils import get_local_time, set_color

from recbole_mamba.data.candidates import CandidateEvalDataLoader
from recbole_mamba.errors import ConfigError
from recbole_mamba.layers.keyed_dropout import key_dropouts
from recbole_mamba.seeds import mixed_seed
from recbole_mamba.trainer.all_positions import scores_by_dot_product, training_loss
from recbole_mamba.trainer.checkpoint import (
    RELEASE_CHUNK_BYTES,
    copy_from_mapped,
    load_checkpoint,
    parameters_to_json,
    save_checkpoint,
    token_tensors,
)
from recbole_mamba.trainer.optimizers import SparseTableOptimizer
from recbole_mamba.trainer.resume import checkpoint_of, random_state, restore_random_state, resume_file_of
from recbole_mamba.trainer.ranking import RankingCollector, candidate_topk, chunked_topk


class SafeCheckpointTrainer(Trainer):
    """Same training and evaluation as RecBole's ``Trainer``; checkpoints hold only tensors,
    numbers and the config's parameters as JSON (which
    :func:`recbole_mamba.quick_start.load_run` rebuilds the config from), and load with
    ``weights_only=True``. With
    ``train_mode: all_positions`` the loss covers every position of each training row
    (:mod:`recbole_mamba.trainer.all_positions`).

    Evaluation of a model that scores by dot product (the plugin's, SASRec, GRU4Rec) under
    metrics that read top-k lists (Hit, NDCG, MRR, ...) never forms a users x items matrix: full
    ranking walks the items in chunks, sampled ranking scores each row's candidates once
    (:mod:`recbole_mamba.trainer.ranking`, :mod:`recbole_mamba.data.candidates`)."""

    item_tokens = None  # Utf8Tokens: the external token of each item id, in every checkpoint for serving
    _history = None  # (UserHistory, left out) of the dataloader being evaluated, for exclude_history
    train_seconds = ()  # fit: wall seconds of each training epoch
    evaluations = ()  # fit: one dict per validation: epoch, valid_s, valid_score, elapsed_s (since fit began)
    initial_loss = None  # fit: the first training batch's loss (the untrained model's)
    patience_from_epoch = None  # fit: the epoch from which early stopping counts (left_initial_plateau)
    batches_per_epoch = 0  # fit: len(train_data)
    _resumed = None  # resume: the state fit continues from
    _ranked = False  # evaluate: top-k lists without score matrices (see the class docstring)
    _eval_data = None  # evaluate: the dataloader being evaluated
    world_size = 1  # processes training the model together (a resume state must be continued by as many)

    def __init__(self, config, model):
        super().__init__(config, model)
        self.eval_collector = RankingCollector(config)
        self.batch_key = key_dropouts(model)  # dropout masks keyed by the batch (layers/keyed_dropout.py)
        # RecBole names by model and second: two runs of a model in one folder ending in the same
        # second would write one file
        self.saved_model_file = os.path.join(
            self.checkpoint_dir, f"{config['model']}-{get_local_time()}-{uuid.uuid4().hex[:8]}.pth")

    def _write_checkpoint(self, path, **state):
        """Write a checkpoint (:func:`~recbole_mamba.trainer.checkpoint.save_checkpoint`)."""
        save_checkpoint(path, **state)
        if self.item_tokens is not None:
            self.item_tokens.drop_pages()  # the write read all of a store's token files

    def _random_state(self, train_data):
        """What the resume state holds of the random generators (:func:`random_state`)."""
        return random_state(train_data)

    def _restore_random_state(self, state, train_data):
        restore_random_state(state, train_data)

    def _build_optimizer(self, **kwargs):
        """RecBole's optimizer, or with ``item_table_updates: sparse`` Adam whose item-table
        updates (``item_table_optimizer``: lazy Adam or row-wise Adagrad) touch only the rows each
        batch reads (:mod:`recbole_mamba.trainer.optimizers`)."""
        if self.config["item_table_updates"] != "sparse":
            return super()._build_optimizer(**kwargs)
        table = self.model.item_embedding.weight
        others = [p for p in self.model.parameters() if p.requires_grad and p is not table]
        return SparseTableOptimizer(table, others, lr=self.learning_rate,
                                    table_optimizer=self.config["item_table_optimizer"] or "adam",
                                    table_lr=self.config["item_table_learning_rate"])

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        """RecBole's fit, with early stopping patient for at least ``min_patience_steps`` optimizer
        steps: ``stopping_step`` evaluations, or more where an epoch has few batches (all-position
        training on a small dataset); and counting no evaluation without improvement while the
        training loss is still on its initial plateau (:meth:`left_initial_plateau`). Times each
        epoch (``train_seconds``, ``evaluations``). With ``saved``, the state after each evaluated
        epoch goes to :attr:`resume_file`, from which :meth:`resume` continues the same run."""
        # as the first epoch had it (a length-grouped epoch's batch count varies a little)
        self.batches_per_epoch = len(train_data) if self._resumed is None else self._resumed["batches_per_epoch"]
        self.stopping_step = self.patience_in_evaluations(self.batches_per_epoch)
        if self._resumed is None:
            self.train_seconds, self.evaluations = [], []
            self.patience_from_epoch = self.start_epoch if self.start_epoch > 0 else None
            self.initial_loss = None
            self._fit_start = time.perf_counter()
        else:
            self._fit_start = time.perf_counter() - self._resumed["elapsed_s"]
            self._restore_random_state(self._resumed["random_state"], train_data)
            self._resumed = None
            if self.start_epoch >= self.epochs or self.cur_step > self.stopping_step:
                return self.best_valid_score, self.best_valid_result  # it had finished training

        def end_of_epoch(epoch_idx, valid_score):
            if saved:
                self._save_resume_state(epoch_idx, train_data)
            if callback_fn is not None:
                callback_fn(epoch_idx, valid_score)

        return super().fit(train_data, valid_data, verbose=verbose, saved=saved, show_progress=show_progress,
                           callback_fn=end_of_epoch)

    @property
    def resume_file(self):
        """Where the state after the last evaluated epoch goes: the checkpoint's name + ``-last``."""
        return resume_file_of(self.saved_model_file)

    def _save_resume_state(self, epoch, train_data):
        """Everything the next epoch depends on, weights-only and atomically (a kill during the
        write leaves the previous epoch's state)."""
        self._write_checkpoint(
            self.resume_file,
            **self._checkpoint_state(epoch),
            best_valid_result=None if self.best_valid_result is None else {
                key: float(value) for key, value in self.best_valid_result.items()},
            train_loss={str(key): float(value) for key, value in self.train_loss_dict.items()},
            patience_from_epoch=self.patience_from_epoch,
            initial_loss=self.initial_loss,
            train_seconds=[float(s) for s in self.train_seconds],
            evaluations=[{key: float(value) for key, value in e.items()} for e in self.evaluations],
            elapsed_s=time.perf_counter() - self._fit_start,
            batches_per_epoch=int(self.batches_per_epoch),
            random_state=self._random_state(train_data),
            world_size=self.world_size,
        )

    def discard_resume_state(self):
        """Remove :attr:`resume_file` (a finished run has nothing to resume)."""
        if os.path.exists(self.resume_file):
            os.remove(self.resume_file)

    def resume(self, state, resume_file):
        """Continue the run whose resume state ``resume_file`` was loaded as ``state``
        (:func:`~recbole_mamba.trainer.checkpoint.load_checkpoint`): weights, optimizer, epoch
        counter, best result and its checkpoint (the file beside it), early-stopping state, timings;
        the random generators and the training-batch order are restored when :meth:`fit` starts."""
        self.saved_model_file = checkpoint_of(os.path.abspath(resume_file))
        self.start_epoch = state["epoch"] + 1
        self.cur_step = state["cur_step"]
        self.best_valid_score = state["best_valid_score"]
        self.best_valid_result = state["best_valid_result"]
        self.train_loss_dict = {int(key): value for key, value in state["train_loss"].items()}
        self._epoch = state["epoch"]
        self.patience_from_epoch, self.initial_loss = state["patience_from_epoch"], state["initial_loss"]
        self.train_seconds, self.evaluations = list(state["train_seconds"]), list(state["evaluations"])
        for evaluation in self.evaluations:
            evaluation["epoch"] = int(evaluation["epoch"])
        self._load_model_weights(state)
        self._load_optimizer_state(resume_file, state["optimizer"])
        self._resumed = state
        self.logger.info(set_color("resumed", "blue") + f": after epoch {state['epoch']} of {self.saved_model_file}")

    def best_evaluation(self):
        """The first validation of ``fit`` with the best score (the checkpoint kept), or None."""
        if not self.evaluations:
            return None
        pick = max if self.valid_metric_bigger else min
        best = pick(e["valid_score"] for e in self.evaluations)
        return next(e for e in self.evaluations if e["valid_score"] == best)

    def patience_in_evaluations(self, steps_per_epoch):
        """Evaluations without improvement before stopping, for ``steps_per_epoch`` batches."""
        stopping_step = self.config["stopping_step"]
        min_steps = self.config["min_patience_steps"]
        if not min_steps or self.eval_step <= 0:
            return stopping_step
        per_evaluation = max(1, steps_per_epoch) * self.eval_step
        patience = max(stopping_step, math.ceil(min_steps / per_evaluation))
        if patience != stopping_step:
            self.logger.info(
                set_color("early stopping", "blue") + f": after {patience} evaluations without improvement "
                f"({per_evaluation} optimizer steps each; min_patience_steps {min_steps})"
            )
        return patience

    def left_initial_plateau(self):
        """Whether an epoch's mean training loss has been ``plateau_loss_drop`` (a fraction) below
        the untrained model's (the first batch's loss of this ``fit``). Until then a model is not
        'not improving' but not started: on data without popularity to learn first (uniform
        items), the loss sits near its initial value for epochs before a sequential rule is found,
        longer than ``stopping_step`` evaluations. On data with many batches an epoch the first
        epoch already ends far below it."""
        if self.patience_from_epoch is not None:
            return True
        drop = self.config["plateau_loss_drop"]
        loss = self.train_loss_dict.get(self._epoch)  # RecBole's fit stores the epoch's sum (of a tuple's parts too)
        if drop and loss is not None and self.initial_loss is not None:
            mean = loss / max(1, self.batches_per_epoch)
            if mean > (1 - drop) * self.initial_loss:
                return False
            self.logger.info(set_color("early stopping", "blue") + f": patience counts from epoch {self._epoch} "
                             f"(mean training loss {mean:.4f}, at least {drop:.0%} below the untrained "
                             f"model's {self.initial_loss:.4f})")
        self.patience_from_epoch = self._epoch
        return True

    def _recording_initial_loss(self, loss_func):
        """``loss_func`` that keeps the first value it returns in ``initial_loss``."""
        def loss(interaction):
            value = loss_func(interaction)
            if self.initial_loss is None:
                self.initial_loss = (sum(value) if isinstance(value, tuple) else value).item()
            return value
        return loss

    def _keying_batches(self, loss_func, epoch_idx, train_data):
        """``loss_func`` that first keys the batch's randomness with its (seed, epoch, batch): the
        model's shared negatives (:meth:`~recbole_mamba.model.negatives.NegativeSampler.seed_shared`)
        and its dropout masks (:class:`~recbole_mamba.layers.keyed_dropout.BatchKey`; a rank's
        loader says where its rows sit in the whole batch)."""
        sampler = getattr(self.model, "negative_sampler", None)
        batches = itertools.count()

        def loss(interaction):
            seed = mixed_seed(self.config["seed"], epoch_idx, next(batches))
            if sampler is not None:
                sampler.seed_shared(seed)
            places, rows = getattr(train_data, "places", None), getattr(train_data, "batch_rows", len(interaction))
            self.batch_key.set(seed, rows, places)
            return loss_func(interaction)
        return loss

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if loss_func is None:
            loss_func = training_loss(self.config, self.model)
        loss_func = self._keying_batches(loss_func or self.model.calculate_loss, epoch_idx, train_data)
        if self.initial_loss is None:
            loss_func = self._recording_initial_loss(loss_func)
        start = time.perf_counter()
        try:
            loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        finally:
            self.batch_key.clear()
        self._epoch = epoch_idx
        self.train_seconds.append(time.perf_counter() - start)
        return loss

    def _checkpoint_state(self, epoch):
        """What every checkpoint holds: the run's parameters, item tokens, counters, weights and
        optimizer state."""
        return dict(
            model=self.config["model"],
            dataset=self.config["dataset"],
            parameters_json=parameters_to_json(self.config),
            item_tokens=None if self.item_tokens is None else token_tensors(self.item_tokens),  # views
            epoch=int(epoch),
            cur_step=int(self.cur_step),
            best_valid_score=float(self.best_valid_score),
            state_dict=self.model.state_dict(),
            other_parameter=self.model.other_parameter(),
            optimizer=self.optimizer.state_dict(),
        )

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        self._write_checkpoint(saved_model_file, **self._checkpoint_state(epoch))
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")

    def _seen_before(self, interaction):
        """(rows, items) to leave out of the batch's ranking under ``exclude_history``, or None."""
        if self._history is None:
            return None
        history, left_out = self._history
        rows, items = history.seen_before(interaction[self.config["USER_ID_FIELD"]].cpu(), left_out)
        return rows.to(self.device), items.to(self.device)

    def _last_states(self, interaction):
        """(B, H) states of the batch's rows and the (n_items, H) item table they score against."""
        model = self.model
        hidden = model.forward(interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN])
        return hidden, model.item_embedding.weight

    def _full_sort_batch_eval(self, batched_data):
        """RecBole's full ranking (item chunks where ``_ranked``); with ``exclude_history`` the items
        each user saw before the target are left out (:mod:`recbole_mamba.data.history`)."""
        interaction, history_index, positive_u, positive_i = batched_data
        if self._ranked and history_index is None:
            interaction = interaction.to(self.device)
            hidden, items = self._last_states(interaction)
            ranked = chunked_topk(hidden, items, max(self.config["topk"]), self._seen_before(interaction))
            return interaction, ranked, positive_u, positive_i
        interaction, scores, positive_u, positive_i = super()._full_sort_batch_eval(batched_data)
        masked = self._seen_before(interaction)
        if masked is not None:
            scores[masked] = -float("inf")
        return interaction, scores, positive_u, positive_i

    def _neg_sample_batch_eval(self, batched_data):
        """RecBole's sampled ranking, or each row once with its candidates
        (:class:`~recbole_mamba.data.candidates.CandidateEvalDataLoader`)."""
        interaction, candidates, positive_u, positive_i = batched_data
        if not isinstance(self._eval_data, CandidateEvalDataLoader):
            return super()._neg_sample_batch_eval(batched_data)
        interaction = interaction.to(self.device)
        hidden, items = self._last_states(interaction)
        ranked = candidate_topk(hidden, items, candidates.to(self.device), max(self.config["topk"]))
        return interaction, ranked, positive_u, positive_i

    def _valid_epoch(self, valid_data, show_progress=False):
        start = time.perf_counter()
        valid_score, valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
        end = time.perf_counter()
        self.last_valid_result = valid_result  # RecBole's fit callback only gets the score
        if not self.left_initial_plateau():
            self.cur_step = 0  # RecBole's early_stopping, called next, counts from here
        self.evaluations.append({"epoch": self._epoch, "valid_s": end - start, "valid_score": float(valid_score),
                                 "elapsed_s": end - self._fit_start})
        return valid_score, valid_result

    def _load_model_weights(self, checkpoint):
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))

    def load_weights(self, checkpoint):
        """Load the model weights of a checkpoint: a file (read weights-only; on a CPU its large
        tensors copied from the file's mapping a chunk at a time, so that its weights are never
        held twice: :func:`~recbole_mamba.trainer.checkpoint.copy_from_mapped`) or one already
        loaded with :func:`~recbole_mamba.trainer.checkpoint.load_checkpoint`."""
        if not isinstance(checkpoint, dict):
            checkpoint = load_checkpoint(checkpoint, map_location=self.device)
            if torch.device(self.device).type == "cpu":
                weights = checkpoint["state_dict"]
                own = self.model.state_dict()
                with torch.no_grad():
                    for key, value in weights.items():
                        mine = own.get(key)
                        if (mine is not None and mine.shape == value.shape and mine.dtype == value.dtype
                                and value.numel() * value.element_size() >= RELEASE_CHUNK_BYTES):
                            copy_from_mapped(mine, value)
                            weights[key] = mine  # loading it again copies nothing
        self._load_model_weights(checkpoint)

    def end_training(self):
        """Training is over: the optimizer and its state (Adam's: twice the item table) and the
        gradients are dropped, before the test loads the best weights."""
        self.optimizer = None
        self.model.zero_grad(set_to_none=True)

    def resume_checkpoint(self, resume_file):
        resume_file = str(resume_file)
        self.saved_model_file = resume_file
        checkpoint = load_checkpoint(resume_file, map_location=self.device)
        if checkpoint["model"].lower() != self.config["model"].lower():
            self.logger.warning(
                f"checkpoint was written by model {checkpoint['model']}, not {self.config['model']}; "
                "loading its state_dict may fail"
            )
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        self._load_model_weights(checkpoint)
        self._load_optimizer_state(resume_file, checkpoint["optimizer"])
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")

    def _load_optimizer_state(self, resume_file, state):
        """The optimizer's ``state`` from ``resume_file``; one saved by another item-table optimizer
        (dense Adam, lazy Adam, row-wise Adagrad) cannot continue this one: refused naming the keys
        that would."""
        def keys(updates, optimizer):
            return f"item_table_updates {updates}" + (f", item_table_optimizer {optimizer}" if updates == "sparse" else "")

        saved = ("sparse", state.get("table_optimizer", "adam")) if "sparse" in state else ("dense", None)
        sparse = self.config["item_table_updates"] == "sparse"
        wanted = ("sparse", self.config["item_table_optimizer"] or "adam") if sparse else ("dense", None)
        if saved != wanted:
            raise ConfigError(f"{resume_file} was trained with {keys(*saved)}, not {keys(*wanted)}: resume it with "
                              f"the optimizer its state is for (--item_table_updates={saved[0]}"
                              + (f" --item_table_optimizer={saved[1]}" if saved[1] else "") + ")")
        self.optimizer.load_state_dict(state)

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        """RecBole's evaluate, loading weights-only checkpoints; models with ``diagnostics()``
        (e.g. MoEMaTrRec's mean gate weights) have them logged after each evaluation."""
        if eval_data and load_best_model:
            checkpoint_file = model_file or self.saved_model_file
            self.load_weights(checkpoint_file)
            self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        self._history = getattr(eval_data, "history", None)
        self._eval_data = eval_data
        self._ranked = scores_by_dot_product(type(self.model)) and self.eval_collector.can_collect_ranked()
        if isinstance(eval_data, CandidateEvalDataLoader) and not self._ranked:
            raise ValueError("CandidateEvalDataLoader needs a dot-product model and top-k metrics")
        if hasattr(self.model, "reset_diagnostics"):
            self.model.reset_diagnostics()
        result = super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)
        if eval_data and hasattr(self.model, "diagnostics"):
            values = self.model.diagnostics()
            if values:
                self.logger.info(
                    set_color("model diagnostics", "blue") + ": "
                    + ", ".join(f"{key} {value:.4f}" for key, value in values.items())
                )
        return result
