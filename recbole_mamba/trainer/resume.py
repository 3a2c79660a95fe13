"""What a run needs beyond its weights to continue after an interruption exactly as it would have
gone on: the random generators (Python's, numpy's, torch's, CUDA's) and the training loader's own
generator (RecBole's shuffles and the length-grouped plans draw from it), as tensors and numbers
that a weights-only checkpoint can hold; and where a run's resume state is kept
(``saved/<model>-<time>-last.pth`` beside its best checkpoint ``saved/<model>-<time>.pth``).
"""

import os
import random

import numpy as np
import torch

from recbole_mamba.errors import ConfigError

RESUME_SUFFIX = "-last.pth"


def resume_file_of(checkpoint_file):
    """``saved/MambaRec-<time>.pth`` -> ``saved/MambaRec-<time>-last.pth``."""
    root, _ = os.path.splitext(checkpoint_file)
    return root + RESUME_SUFFIX


def checkpoint_of(resume_file):
    """``saved/MambaRec-<time>-last.pth`` -> ``saved/MambaRec-<time>.pth``: the best checkpoint is
    found beside its resume state, so a run's folder can be moved or copied (a Tune trial's
    checkpoint) and still resume."""
    return resume_file[: -len(RESUME_SUFFIX)] + ".pth"


def resume_files(folder):
    """The resume states in ``folder`` (a run's ``checkpoint_dir``; none where it does not exist)."""
    if not os.path.isdir(folder):
        return []
    return [os.path.join(folder, name) for name in os.listdir(folder) if name.endswith(RESUME_SUFFIX)]


def find_resume_file(path):
    """The resume state a user points at: the file itself, the one beside a best checkpoint, or in
    a folder (a run's ``checkpoint_dir``) the newest; a :class:`ConfigError` where there is none."""
    if os.path.isdir(path):
        found = resume_files(path)
        if not found:
            raise ConfigError(f"no resume state (*{RESUME_SUFFIX}) in {path}: a run leaves one after its first "
                              "evaluated epoch")
        return max(found, key=os.path.getmtime)
    candidate = path if path.endswith(RESUME_SUFFIX) else resume_file_of(path)
    if not os.path.isfile(candidate):
        raise ConfigError(f"no resume state for {path} (looked for {candidate})")
    return candidate


def random_state(train_data):
    """The state of every generator the next epoch draws from."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "mt": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
        "loader": train_data.generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_random_state(state, train_data):
    """Set every generator to ``state`` (:func:`random_state`); a loader that plans its batches
    ahead plans the coming epoch again from the restored generator."""
    python = state["python"]
    random.setstate((python["version"], tuple(python["mt"].tolist()), python["gauss"]))
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    train_data.generator.set_state(state["loader"])
    if hasattr(train_data, "plan_again"):
        train_data.plan_again()
