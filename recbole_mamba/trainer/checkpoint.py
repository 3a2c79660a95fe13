"""Checkpoints that load with ``torch.load(weights_only=True)``.

RecBole pickles its whole Config into checkpoints, which torch >= 2.6 refuses to load by default.
Ours hold tensors (state_dicts), plain numbers and strings only; the configuration is stored as a
JSON string of the parameters it was built from, which rebuild it
(:func:`recbole_mamba.quick_start.load_run`). Files are written to a temporary name in the target folder and then renamed, so a
crash never leaves a half-written checkpoint.
"""

import json
import pickle

import torch

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
    if hasattr(tokens, "arrays"):
        blob, offsets = tokens.arrays()
        return {"utf8": torch.from_numpy(blob), "ends": torch.from_numpy(offsets[1:])}
    encoded = [str(token).encode("utf-8") for token in tokens]
    ends = torch.tensor([len(b) for b in encoded], dtype=torch.int64).cumsum(0)
    return {"utf8": torch.frombuffer(bytearray(b"".join(encoded)), dtype=torch.uint8), "ends": ends}


def tokens_of(value):
    """The list of str of a checkpoint's ``item_tokens`` (:func:`token_tensors`, or a list of str
    as older checkpoints hold them)."""
    if not isinstance(value, dict):
        return list(value)
    blob, ends = bytes(value["utf8"].numpy()), value["ends"].tolist()
    return [blob[a:b].decode("utf-8") for a, b in zip([0, *ends[:-1]], ends, strict=True)]


def save_checkpoint(path, **state):
    """Write ``state`` (tensors, state_dicts, numbers, strings) atomically to ``path``."""
    with atomic_open(path, "wb") as f:
        torch.save({"format": FORMAT, **state}, f)


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
