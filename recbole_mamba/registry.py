"""Model names -> classes: the plugin's models and the RecBole sequential models it runs, in one
place.

RecBole's ``get_model`` only searches ``recbole.model``; the plugin resolves names here and hands
RecBole the class, so nothing in RecBole is patched. Every model is trained by the plugin's
:class:`~recbole_mamba.trainer.SafeCheckpointTrainer` (RecBole's ``Trainer`` with weights-only
checkpoints), so a RecBole model for which RecBole's ``get_trainer`` picks another trainer is
refused, as are the models listed in :data:`REFUSED` with the reason; every other RecBole
sequential model is offered, and a test trains each of them for one epoch.
"""

import inspect

from recbole_mamba.errors import ConfigError

PLUGIN_MODEL_NAMES = ("MambaRec", "MoEMaTrRec", "RecMamba")

# RecBole sequential models the plugin's pipeline does not run, and why.
REFUSED = {
    "DIN": "a click-through-rate model (labelled interactions, AUC/LogLoss), not a next-item ranker",
    "DIEN": "a click-through-rate model (labelled interactions, AUC/LogLoss), not a next-item ranker",
    "KSR": "it needs pretrained knowledge-graph entity embeddings (<dataset>.ent, .link)",
    "GRU4RecKG": "it needs pretrained knowledge-graph entity embeddings (<dataset>.ent)",
    "GRU4RecCPR": "RecBole 1.2.1 disables its predict(), so sampled evaluation cannot run",
    "SASRecCPR": "RecBole 1.2.1 disables its predict(), so sampled evaluation cannot run",
}
# RecBole models that read item features (``selected_features``) from the dataset's .item file
FEATURE_MODELS = ("FDSA", "GRU4RecF", "SASRecF")


class UnknownModelError(ConfigError):
    """A model name that is neither a plugin model nor a RecBole sequential model."""


class UnsupportedModelError(ConfigError):
    """A RecBole sequential model that the plugin's pipeline does not run."""


def plugin_models():
    """{name: class} of the plugin's recommenders."""
    from recbole_mamba import model

    return {name: getattr(model, name) for name in PLUGIN_MODEL_NAMES}


def recbole_sequential_package():
    """``recbole.model.sequential_recommender``, imported without its side effect: RecBole 1.2.1's
    ``sine.py`` calls ``torch.autograd.set_detect_anomaly(True)`` at import, which would slow every
    training step of every model in the process (by about a third, measured on SASRec). The
    anomaly mode is left as it was before the import."""
    import torch

    enabled, check_nan = torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()
    import recbole.model.sequential_recommender as seq

    torch.autograd.set_detect_anomaly(enabled, check_nan)
    return seq


def recbole_sequential_models():
    """{name: class} of all of RecBole's own sequential recommenders (SASRec, GRU4Rec, ...)."""
    from recbole.model.abstract_recommender import SequentialRecommender

    seq = recbole_sequential_package()

    return {
        name: obj
        for name, obj in vars(seq).items()
        if inspect.isclass(obj) and issubclass(obj, SequentialRecommender)
        and obj is not SequentialRecommender
    }


def refusal(name, model_class):
    """Why the plugin does not run RecBole's ``name``, or None where it does."""
    from recbole.trainer import Trainer
    from recbole.utils import get_trainer

    if name in REFUSED:
        return REFUSED[name]
    trainer = get_trainer(model_class.type, name)
    if trainer is not Trainer:
        return f"it needs RecBole's {trainer.__name__}, which the plugin does not run"
    return None


def supported_recbole_models():
    """{name: class} of the RecBole sequential models the plugin runs."""
    return {name: cls for name, cls in recbole_sequential_models().items() if refusal(name, cls) is None}


def model_names():
    """(plugin model names, supported RecBole sequential model names), each sorted."""
    return sorted(PLUGIN_MODEL_NAMES), sorted(supported_recbole_models())


def get_model(name):
    """The model class called ``name``; :class:`UnknownModelError` lists the choices, and
    :class:`UnsupportedModelError` says why a RecBole model is not run."""
    if name in PLUGIN_MODEL_NAMES:
        return plugin_models()[name]
    recbole_models = recbole_sequential_models()
    if name in recbole_models:
        reason = refusal(name, recbole_models[name])
        if reason is not None:
            raise UnsupportedModelError(
                f"model {name!r} is not supported by recbole-mamba: {reason}; "
                "run it with RecBole's own run_recbole"
            )
        return recbole_models[name]
    plugin, theirs = model_names()
    raise UnknownModelError(
        f"unknown model {name!r}; choose one of the plugin's models ({', '.join(plugin)}) "
        f"or RecBole's sequential models ({', '.join(theirs)})"
    )
