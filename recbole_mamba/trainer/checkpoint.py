"""Checkpoints that load with ``torch.load(weights_only=True)``.

RecBole pickles its whole Config into checkpoints, which torch >= 2.6 refuses to load by default.
Ours hold tensors (state_dicts), plain numbers and strings only; the configuration is stored as a
JSON string of the parameters it was built from, which rebuild it
(:func:`recbole_mamba.quick_start.load_run`). Files are written to a temporary name in the target folder and then renamed, so a
crash never leaves a half-written checkpoint.
"""

import ctypes
import json
import mmap
import pickle

import numpy as np
import torch

from recbole_mamba.atomics.tokens import Utf8Tokens
from recbole_mamba.errors import InputError
from recbole_mamba.files import atomic_open
from recbole_mamba.launch_keys import LAUNCH_KEYS

FORMAT = "recbole-mamba/1"


class CheckpointError(InputError):
    """A file that is not a loadable recbole-mamba checkpoint."""


def parameters_to_json(config):
    """The parameters a config was built from (``RecboleMambaConfig.parameters_dict``: every key as
    merged from yaml files, dict and command line) as a JSON string; ``null`` for a plain RecBole
    Config."""
    return json.dumps(getattr(config, "parameters_dict", None), sort_keys=True)


def checkpoint_parameters(path, checkpoint):
    """The parameters a loaded checkpoint's config was built from (see :func:`parameters_to_json`);
    a :class:`CheckpointError` where it holds none."""
    parameters = json.loads(checkpoint.get("parameters_json") or "null")
    if parameters is None:
        raise CheckpointError(f"{path}: it holds no parameters to rebuild its config from (written by an "
                              "older recbole-mamba, or with RecBole's own Config)")
    # how an older run was launched (it stored --nproc, --world_size, ...) is no part of its config
    return {key: value for key, value in parameters.items() if key not in LAUNCH_KEYS}


def token_tensors(tokens):
    """Item tokens as a checkpoint holds them: ``{"utf8": (bytes,) uint8, "ends": (ids,) int64}``,
    each token's UTF-8 bytes ending at ``ends[i]`` (17 bytes a 9-character token, where a list of
    str costs about 60 in memory and in the file). ``tokens``: a store's token table (its arrays,
    not copied) or a sequence of str."""
    blob, offsets = (tokens if isinstance(tokens, Utf8Tokens) else Utf8Tokens.from_strings(tokens)).arrays()
    return {"utf8": torch.from_numpy(blob), "ends": torch.from_numpy(offsets[1:])}


def tokens_of(value):
    """The :class:`~recbole_mamba.atomics.tokens.Utf8Tokens` of a checkpoint's ``item_tokens``
    (:func:`token_tensors`, its arrays not copied, or a list of str as older checkpoints hold them)."""
    if not isinstance(value, dict):
        return Utf8Tokens.from_strings(value)
    ends = value["ends"].numpy()
    return Utf8Tokens(value["utf8"].numpy(), np.r_[np.int64(0), ends])


def save_checkpoint(path, **state):
    """Write ``state`` (tensors, state_dicts, numbers, strings) atomically to ``path``."""
    with atomic_open(path, "wb") as f:
        torch.save({"format": FORMAT, **state}, f)


RELEASE_CHUNK_BYTES = 64 << 20  # copied from a mapped checkpoint, then dropped from this process
_MADV_DONTNEED = 4  # Linux


def _drop_pages(address, length):
    """Drop the pages of ``[address, address + length)`` that lie wholly in it from this process's
    resident memory (``madvise(MADV_DONTNEED)``): for a file mapping, they are read again from the
    file if touched. False where the platform has no ``madvise``."""
    start = -(-address // mmap.PAGESIZE) * mmap.PAGESIZE
    end = (address + length) // mmap.PAGESIZE * mmap.PAGESIZE
    if end <= start:
        return True
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), _MADV_DONTNEED) == 0
    except (OSError, AttributeError):
        return False


def copy_from_mapped(destination, source):
    """``destination.copy_(source)`` where ``source`` is a CPU tensor memory-mapped from a
    checkpoint (:func:`load_checkpoint`), in chunks of rows whose source pages are dropped from
    this process once copied: the file's copy of a 10^7-row item table never counts in the
    resident memory beside the model's own (the test loading the best weights). Only for tensors
    that a file maps: an anonymous source would read back as zeros."""
    if source.device.type != "cpu" or not source.is_contiguous() or source.dim() == 0:
        destination.copy_(source)
        return
    rows = max(1, RELEASE_CHUNK_BYTES // max(1, source[0].numel() * source.element_size()))
    for first in range(0, source.size(0), rows):
        chunk = source[first:first + rows]
        destination[first:first + rows].copy_(chunk)
        _drop_pages(chunk.data_ptr(), chunk.numel() * chunk.element_size())


def load_checkpoint(path, map_location="cpu"):
    """Load a checkpoint with ``weights_only=True``; never unpickles arbitrary objects. A file that
    is not one (pickled objects, truncated, another format) is a :class:`CheckpointError`. On the
    CPU its tensors are memory-mapped, so what is never read (the optimizer's state, when only the
    weights are loaded for evaluation: twice the item table) costs no memory."""
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True,
                                mmap=torch.device(map_location).type == "cpu")
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refusing to load: the file holds pickled Python objects (a checkpoint written "
            f"by RecBole's own Trainer?), and only weights-only checkpoints are loaded ({e})"
        ) from None
    except (RuntimeError, EOFError, ValueError) as e:  # torch's reader on a truncated or foreign file
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or damaged?): {e}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} checkpoint")
    return checkpoint
