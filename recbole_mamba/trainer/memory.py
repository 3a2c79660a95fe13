"""Peak memory of a run, estimated before training; a run that cannot fit is refused in one line.

The estimate adds, on the device that trains:
- the optimizer's state (Adam: two moments, 2 x the parameters) and, on a GPU, the parameters;
- the best checkpoint's weights, which the test loads beside the model's (on a CPU, mapped from
  the file: its pages count as they are read);
- the larger of one training step (forward, loss, backward) of a full batch and the optimizer's
  update (the gradients and Adam's temporaries: 3 x the parameters, measured), and one
  evaluation batch (forward, ranking): on a GPU the larger of the two (the caching allocator
  reuses the training step's blocks), on a CPU their sum (evaluation comes on top of the heap the
  training epoch leaves; measured with benchmarks/bench_scale.py). The models' encoding is
  measured on three small probe batches of random items by counting the bytes of the tensors alive
  at its peak (:class:`LiveBytes`), fitted as ``fixed + rows x (a x length + b x length^2)``
  (attention is quadratic in length) and extrapolated to the run's batch; the loss's and the
  ranking's working sets come from their formulas (:func:`loss_bytes`, :func:`ranking_bytes`). On
  a CPU a step costs :data:`RESIDENT_PER_TENSOR_BYTE` times its tensors in resident memory;
- on a CPU, the process's resident memory when the estimate is made (the dataset, loaded; the
  parameters).

It is compared with what the device has free (``MemAvailable``, or a cgroup's limit where one is
set; ``torch.cuda.mem_get_info`` on a GPU). :class:`MemoryBudgetError` names the estimate, its
largest parts and the settings that shrink them.
"""

import os
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from recbole_mamba.errors import ConfigError
from recbole_mamba.train_modes import ALL_POSITIONS
from recbole_mamba.trainer.checkpoint import RELEASE_CHUNK_BYTES

GIB = 1 << 30
# Resident memory per byte of tensors in a training step or an evaluation batch (the allocator's
# and the math libraries' share beside the tensors, and the heap an epoch leaves that evaluation
# reuses only in part), and what the trainer, its loaders and checkpointing add to the process
# once training starts. The factor was fitted to the 250-user runs of benchmarks/bench_scale.py
# (2-core VM, L = 2,000, 0.4 M items: MambaRec 1.72 and 1.54 GiB, SASRec 5.08 GiB peak); the
# runtime to its runs on the interaction store (2,000 and 16,000 users at 0.1 M items, measured
# 1.06 and 1.22 GiB, where 0.3 GiB over-estimated them by a quarter; 27,000 users at 20.6 M items,
# 22.7 GiB) and checked on the atomic files' 1,000- and 4,000-user runs (docs/large-catalogues.md).
RESIDENT_PER_TENSOR_BYTE = 1.6
TRAINING_RUNTIME_BYTES = 0.1 * GIB
# probes of 2 and 4 rows of 256 items and 4 rows of 512 (fewer where MAX_ITEM_LIST_LENGTH is
# shorter): long enough that attention's length x length tensors show as they will at length 2,000
PROBE_ROWS, PROBE_LENGTH = 2, 256


class MemoryBudgetError(ConfigError):
    """A run whose estimated peak memory exceeds what its device has free."""


class LiveBytes(TorchDispatchMode):
    """Within the mode, ``peak``: the most bytes held at once by tensors created inside it (each
    storage counted once, released when its last tensor is freed)."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._storages = {}

    def _release(self, key):
        self.live -= self._storages.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, torch.Tensor) and t.device.type != "meta" and t.layout == torch.strided}
        for tensor in tree_flatten(out)[0]:
            if not isinstance(tensor, torch.Tensor) or tensor.device.type == "meta":
                continue
            if tensor.layout != torch.strided:  # a sparse gradient: its indices and values
                self._count(tensor, tensor._indices().nbytes + tensor._values().nbytes, id(tensor))
                continue
            storage = tensor.untyped_storage()
            key = storage.data_ptr()
            if key == 0 or key in self._storages or key in inputs:  # in-place results and views hold no new memory
                continue
            self._count(tensor, storage.nbytes(), key)
        return out

    def _count(self, tensor, nbytes, key):
        self._storages[key] = nbytes
        self.live += nbytes
        self.peak = max(self.peak, self.live)
        weakref.finalize(tensor, self._release, key)


def _probe_rows(model, rows, length, device):
    """An interaction of ``rows`` full rows of ``length`` random items, with targets and negatives."""
    from recbole.data.interaction import Interaction

    g = torch.Generator().manual_seed(0)

    def ids(*shape):
        return torch.randint(1, model.n_items, shape, generator=g).to(device)

    return Interaction({
        model.ITEM_SEQ: ids(rows, length),
        model.ITEM_SEQ_LEN: torch.full((rows,), length, dtype=torch.long, device=device),
        model.POS_ITEM_ID: ids(rows),
        model.NEG_ITEM_ID: ids(rows),
    })


def _peak(step, model, rows, length, device):
    interaction = _probe_rows(model, rows, length, device)
    with LiveBytes() as meter:
        step(interaction)
    model.zero_grad(set_to_none=True)
    return meter.peak


def fit_batch_bytes(step, model, device, max_length, rows=PROBE_ROWS, length=PROBE_LENGTH):
    """``bytes(rows, length)`` of ``step`` on a batch, fitted as ``fixed + rows x (a x length +
    b x length^2)`` to its peaks on probes of (rows, l), (2 rows, l), (2 rows, 2 l), with
    ``l = min(length, max_length // 2)`` (a position embedding holds ``max_length`` positions)."""
    length = max(1, min(length, max_length // 2))
    one, two = (_peak(step, model, r, length, device) for r in (rows, 2 * rows))
    fixed = max(0, 2 * one - two)
    per_row = max(0, two - one) / rows  # a x length + b x length^2
    quadratic = 0.0
    if 2 * length <= max_length:
        long = _peak(step, model, 2 * rows, 2 * length, device)
        per_row_long = max(0, long - fixed) / (2 * rows)  # 2 a length + 4 b length^2
        quadratic = max(0.0, (per_row_long - 2 * per_row) / (2 * length ** 2))
    linear = max(0.0, (per_row - quadratic * length ** 2) / length)
    return lambda r, n: fixed + r * (linear * n + quadratic * n * n)


def available_bytes(device):
    """Bytes the run can still take on ``device``: a GPU's free memory; on a CPU the kernel's
    ``MemAvailable`` or the cgroup limit's headroom, whichever is smaller."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    with open("/proc/meminfo") as f:
        info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
    free = info.get("MemAvailable", info.get("MemFree", 0))
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read())
        if limit != "max":
            free = min(free, int(limit) - used)
    except (OSError, ValueError):
        pass
    return free


def resident_bytes():
    """This process's resident memory now (Linux), else 0."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def format_bytes(n):
    return f"{n / GIB:.1f} GiB" if n >= GIB / 10 else f"{n / (1 << 20):.0f} MiB"


def encoding_step(model, grad, backward=False):
    """``interaction ->`` the model's states at every position: with gradients (``grad``; its
    peak is about what the forward pass saves for backward) and a backward pass (``backward``),
    or without gradients, as evaluation encodes."""
    from recbole_mamba.trainer.all_positions import per_position_hidden

    def step(interaction):
        with torch.set_grad_enabled(grad):
            hidden = per_position_hidden(model, interaction[model.ITEM_SEQ])
            if backward:
                hidden.sum().backward()

    return step


def whole_step(config, model, train):
    """``interaction ->`` one training step (forward, loss, backward) or one evaluation batch of
    RecBole's (dense scores and the collector's positives matrix), for models that score otherwise
    than by a dot product with an item table."""
    from recbole_mamba.trainer.all_positions import training_loss

    loss_of = training_loss(config, model)
    k = max(config["topk"])

    def step(interaction):
        if train:
            loss = loss_of(interaction)
            (sum(loss) if isinstance(loss, tuple) else loss).backward()
            return
        with torch.no_grad():
            scores = model.full_sort_predict(interaction)
            torch.topk(scores, k, dim=-1)
            torch.zeros_like(scores, dtype=torch.int)

    return step


def loss_bytes(loss_type, states, n_items, hidden_size, negatives, table_gradients=3):
    """The working set of the plugin's loss on ``states`` states beside the states themselves: a
    few (states, H) tensors, ``table_gradients`` item-table-sized gradients (dense: the loss's, the
    embedding lookup's, and their sum; 0 with sparse item-table updates), and the chunk buffers
    (exact CE) or the shared negatives' logits (SSM, GBCE). Calibrated with :class:`LiveBytes` at
    960 and 12,800 states and 10^6 items."""
    from recbole_mamba.model.chunked_ce import item_chunk

    working = 6 * states * hidden_size * 4 + table_gradients * n_items * hidden_size * 4
    if loss_type == "CE":
        return working + 3 * states * item_chunk(states, n_items) * 4
    if loss_type in ("SSM", "GBCE"):
        return working + 2 * states * (negatives + 1) * 4 + 2 * negatives * hidden_size * 4
    return working


def ranking_bytes(rows, n_items, k, candidates, hidden_size):
    """The working set of ranking ``rows`` states: item chunks (full ranking; a float score, three
    masks and an int64 running count per scored pair) or the rows' candidates (sampled)."""
    from recbole_mamba.trainer.ranking import SCORES_PER_CHUNK

    if candidates is None:
        chunk = min(n_items, max(k, SCORES_PER_CHUNK // max(1, rows)))
        return rows * chunk * (4 + 3 + 8) + rows * 2 * k * 12
    return rows * candidates * (2 * hidden_size * 4 + 16)


def steps_peak(training_step, update, evaluation, on_cpu):
    """What the steps add to the memory held throughout: the training step and the optimizer's
    update take turns; evaluation takes its turn on a GPU and comes on top on a CPU, where tensors
    cost :data:`RESIDENT_PER_TENSOR_BYTE` times their bytes (see :attr:`RunMemory.peak`)."""
    factor = RESIDENT_PER_TENSOR_BYTE if on_cpu else 1.0
    train = max(factor * training_step, update)
    return train + factor * evaluation if on_cpu else max(train, evaluation)


OPTIMIZER_STATES = {"adam": 2, "adamw": 2, "sparse_adam": 2, "adagrad": 1, "rmsprop": 1, "sgd": 0}


class RunMemory:
    """The estimate of one run (see the module docstring): ``parts`` {name: bytes} and ``peak``;
    ``train_bytes(rows)`` and ``eval_bytes(rows)`` for other batch sizes."""

    def __init__(self, config, model, device, resident):
        from recbole_mamba.trainer.all_positions import scores_by_dot_product
        from recbole_mamba.trainer.ranking import RankingCollector, test_eval_mode

        self.config, self.length = config, config["MAX_ITEM_LIST_LENGTH"]
        self.n_items, self.k = model.n_items, max(config["topk"])
        self.dot_product = scores_by_dot_product(type(model))
        self.ranked = self.dot_product and RankingCollector(config).can_collect_ranked()
        self.all_positions = config["train_mode"] == ALL_POSITIONS
        mode = test_eval_mode(config)
        self.candidates = int(mode[3:]) + 1 if mode[:3] in ("uni", "pop") else None
        self.hidden_size = model.item_embedding.weight.size(1) if self.dot_product else 0
        was_training = model.training
        model.train()
        self.unmeasured = None  # why the steps could not be probed, if they could not
        try:
            self._train = fit_batch_bytes(encoding_step(model, True, backward=True) if self.dot_product else
                                          whole_step(config, model, True), model, device, self.length)
            if self.dot_product:
                self._forward = fit_batch_bytes(encoding_step(model, True), model, device, self.length)
            model.eval()
            self._eval = fit_batch_bytes(encoding_step(model, False) if self.ranked else
                                         whole_step(config, model, False), model, device, self.length)
        except (KeyError, RuntimeError, ValueError, IndexError) as e:
            # a RecBole model whose loss or scores read fields a probe of item ids lacks (BERT4Rec's masks)
            self.unmeasured = f"{type(e).__name__}: {e}"
            self._train = self._forward = self._eval = lambda rows, length: 0
        finally:
            model.zero_grad(set_to_none=True)
            model.train(was_training)
        params = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
        states = OPTIMIZER_STATES.get(str(config["learner"]).lower(), 2)
        self.sparse_table = config["item_table_updates"] == "sparse"
        table = model.item_embedding.weight.numel() * 4 if self.sparse_table else 0
        rowwise = self.sparse_table and config["item_table_optimizer"] == "rowwise_adagrad"
        if rowwise:  # a float a row
            self.parts = {"optimizer state": states * (params - table) + 4 * model.item_embedding.weight.size(0)}
        else:
            self.parts = {"optimizer state": states * params}
        # what the item table's Adam would give back under sparse row-wise Adagrad: its state, and
        # with dense updates the table's update (gradient and Adam's temporaries)
        table_bytes = model.item_embedding.weight.numel() * 4 if self.dot_product else 0
        self.table_adam_bytes = 0 if rowwise else states * table_bytes
        self.rowwise_saving = self.table_adam_bytes + (0 if self.sparse_table else (1 + states) * table_bytes)
        if torch.device(device).type == "cuda":
            self.parts["parameters"] = params
        else:
            self.parts["process now (dataset, parameters)"] = resident
            self.parts["trainer and loaders"] = TRAINING_RUNTIME_BYTES
        self.parts["training step"] = self.train_bytes(config["train_batch_size"])
        self.parts["evaluation batch"] = self.eval_bytes(config["eval_batch_size"])
        # the optimizer's update: the gradients, and Adam's temporaries (measured: 2 x the parameters)
        self.parts["optimizer update"] = (1 + states) * (params - table)  # sparse: the table's rows read only
        # the test loads the best checkpoint's weights beside the model's; on a CPU, copied from
        # the file's mapping a chunk at a time (trainer/checkpoint.py: copy_from_mapped)
        self.on_cpu = torch.device(device).type == "cpu"
        self.parts["best weights, loaded for the test"] = min(params, RELEASE_CHUNK_BYTES) if self.on_cpu else params
        self.per_tensor_byte = RESIDENT_PER_TENSOR_BYTE if self.on_cpu else 1.0
        self.steps = ("training step", "optimizer update", "evaluation batch")

    def _states(self, rows):
        """Training states (positions with a loss) in a batch of ``rows`` rows."""
        return rows * self.length if self.all_positions else rows

    def train_bytes(self, rows, n_items=None):
        """One training step of ``rows`` rows: encoding (probed), then the loss (its formula) over
        ``n_items`` items (default the model's)."""
        encoded = self._train(rows, self.length)
        if not self.dot_product:
            return int(encoded)
        loss = loss_bytes(self.config["loss_type"], self._states(rows), n_items or self.n_items, self.hidden_size,
                          self.config["train_negatives"] or 0, table_gradients=0 if self.sparse_table else 3)
        # the loss runs beside what the forward pass saved; the encoding's backward after it
        return int(max(encoded, self._forward(rows, self.length) + loss))

    def eval_bytes(self, rows, n_items=None):
        """One evaluation batch of ``rows`` rows: encoding (probed), then the ranking (its formula)
        over ``n_items`` items (default the model's)."""
        encoded = self._eval(rows, self.length)
        if not self.ranked:
            return int(encoded)
        return int(encoded + ranking_bytes(rows, n_items or self.n_items, self.k, self.candidates, self.hidden_size))

    @property
    def peak(self):
        """Everything else is held throughout; the training step and the optimizer's update take
        turns. On a GPU evaluation takes its turn too (the caching allocator reuses the training
        step's blocks); on a CPU it comes on top of the heap the training epoch left (measured:
        benchmarks/bench_scale.py's valid stage adds the evaluation to the training stage's peak),
        and a step's tensors cost :data:`RESIDENT_PER_TENSOR_BYTE` times their size."""
        return self._held + steps_peak(self.parts["training step"], self.parts["optimizer update"],
                                       self.parts["evaluation batch"], self.on_cpu)

    @property
    def _held(self):
        return sum(v for k, v in self.parts.items() if k not in self.steps)

    def _ce_share(self):
        """The exact softmax's share of the training step (its chunk buffers and table gradients)."""
        loss = loss_bytes("CE", self._states(self.config["train_batch_size"]), self.n_items, self.hidden_size, 0)
        return loss / max(1, self.parts["training step"])

    def eval_rows_that_fit(self, available):
        """The most evaluation rows (at most ``eval_batch_size``) whose batch fits beside the rest
        within ``available`` bytes, or 0."""
        train = max(self.per_tensor_byte * self.parts["training step"], self.parts["optimizer update"])
        if train > available - self._held:
            return 0
        room = (available - self._held - (train if self.on_cpu else 0)) / self.per_tensor_byte
        low, high = 0, self.config["eval_batch_size"]
        while low < high:  # the largest rows with eval_bytes(rows) <= room
            middle = (low + high + 1) // 2
            low, high = (middle, high) if self.eval_bytes(middle) <= room else (low, middle - 1)
        return low

    def describe(self):
        return ", ".join(f"{name} {format_bytes(n)}" for name, n in self.parts.items())

    def fixes(self, available):
        """What would bring the peak within ``available`` bytes, as settings to change."""
        free = available - self._held
        train = max(self.per_tensor_byte * self.parts["training step"], self.parts["optimizer update"])
        evaluation = self.per_tensor_byte * self.parts["evaluation batch"]
        # on a CPU a step's room is what the other leaves, and at least half of what is free
        room = (free - (min(evaluation, free / 2) if self.on_cpu else 0)) / self.per_tensor_byte
        fixes = []
        if self.parts["training step"] > room:
            rows = max((r for r in (2 ** i for i in range(20)) if self.train_bytes(r) <= room), default=0)
            if rows and self.all_positions:
                fixes.append(f"--train_batch_tokens={rows * self.length} (or --train_batch_size={rows})")
            elif rows:
                fixes.append(f"--train_batch_size={rows}")
            if self.config["loss_type"] == "CE" and self.dot_product and self._ce_share() > 0.25:
                fixes.append("--loss_type=SSM (a sampled softmax)")
        room = (free - (min(train, free / 2) if self.on_cpu else 0)) / self.per_tensor_byte
        if self.parts["evaluation batch"] > room:
            rows = max((r for r in (2 ** i for i in range(20)) if self.eval_bytes(r) <= room), default=0)
            if rows:
                fixes.append(f"--eval_batch_size={rows}")
        if self.rowwise_saving > 0.25 * self.peak and self.config["loss_type"] != "CE":
            fixes.append(("" if self.sparse_table else "--item_table_updates=sparse ")
                         + "--item_table_optimizer=rowwise_adagrad (one float of state an item row: "
                         f"{format_bytes(self.rowwise_saving)} less)")
        if free <= 0 or not fixes:
            fixes.append("fewer items (--min-item-count when converting), a smaller hidden_size or a shorter "
                         "MAX_ITEM_LIST_LENGTH")
        return fixes


def check_memory(config, model, logger=None, eval_loaders=(), host_parts=None, share=1.0):
    """Estimate the run's peak memory (:class:`RunMemory`), log it, and raise
    :class:`MemoryBudgetError` where it exceeds what the device has free; returns the estimate.
    ``host_parts`` ({name: bytes}): what the process will hold beside it on a CPU that is not
    resident yet (a memory-mapped store's pages). ``share``: the fraction of the device's free
    memory this process may take (1 / the ranks of a distributed run on the machine, on a CPU).

    An evaluation batch that alone does not fit, where the user did not give ``eval_batch_size``,
    is made smaller instead (metrics do not depend on it): ``config`` and ``eval_loaders`` are
    updated and the change is logged."""
    device = torch.device(config["device"])
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # the probes' dropout leaves training's random draws as they were
        estimate = RunMemory(config, model, device, resident_bytes() if device.type == "cpu" else 0)
    if device.type == "cpu":
        estimate.parts.update(host_parts or {})
    available = int(available_bytes(device) * share) + estimate.parts.get("process now (dataset, parameters)", 0)
    where = "this machine" if device.type == "cpu" else str(device)
    if share < 1:
        where = f"this rank's {share:.0%} of {where}"
    rows = estimate.eval_rows_that_fit(available)
    if estimate.peak > available and rows and "eval_batch_size" not in config.external_config_dict:
        if logger is not None:
            logger.info(f"eval_batch_size {config['eval_batch_size']} -> {rows}: its evaluation batch would not "
                        f"fit in {format_bytes(available)} on {where}")
        config["eval_batch_size"] = rows
        for loader in eval_loaders:
            loader.update_config(config)
        estimate.parts["evaluation batch"] = estimate.eval_bytes(rows)
    line = (f"estimated peak memory {format_bytes(estimate.peak)} of {format_bytes(available)} on {where} "
            f"({estimate.describe()})")
    if estimate.unmeasured:
        line += (f"; training and evaluation batches not estimated: {config['model']}'s steps need more than item "
                 f"ids ({estimate.unmeasured})")
    if logger is not None:
        logger.info(line)
    if estimate.peak > available:
        raise MemoryBudgetError(
            f"{config['model']} on {config['dataset']} would need about {format_bytes(estimate.peak)} of memory "
            f"at its peak ({estimate.describe()}), more than the {format_bytes(available)} {where} has: "
            f"try {'; '.join(estimate.fixes(available))} (--check_memory=False runs it anyway)")
    return estimate
