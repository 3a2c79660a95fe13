"""Model names -> classes: the plugin's models and RecBole's sequential models, in one place.

RecBole's ``get_model`` only searches ``recbole.model``; the plugin resolves names here and hands
RecBole the class, so nothing in RecBole is patched.
"""

import inspect

PLUGIN_MODEL_NAMES = ("MambaRec", "MoEMaTrRec", "RecMamba")


class UnknownModelError(ValueError):
    """A model name that is neither a plugin model nor a RecBole sequential model."""


def plugin_models():
    """{name: class} of the plugin's recommenders."""
    from recbole_mamba import model

    return {name: getattr(model, name) for name in PLUGIN_MODEL_NAMES}


def recbole_sequential_models():
    """{name: class} of RecBole's own sequential recommenders (SASRec, GRU4Rec, ...)."""
    import recbole.model.sequential_recommender as seq
    from recbole.model.abstract_recommender import SequentialRecommender

    return {
        name: obj
        for name, obj in vars(seq).items()
        if inspect.isclass(obj) and issubclass(obj, SequentialRecommender)
        and obj is not SequentialRecommender
    }


def model_names():
    """(plugin model names, RecBole sequential model names), each sorted."""
    return sorted(PLUGIN_MODEL_NAMES), sorted(recbole_sequential_models())


def get_model(name):
    """The model class called ``name``; :class:`UnknownModelError` lists the choices."""
    if name in PLUGIN_MODEL_NAMES:
        return plugin_models()[name]
    recbole_models = recbole_sequential_models()
    if name in recbole_models:
        return recbole_models[name]
    plugin, theirs = model_names()
    raise UnknownModelError(
        f"unknown model {name!r}; choose one of the plugin's models ({', '.join(plugin)}) "
        f"or RecBole's sequential models ({', '.join(theirs)})"
    )
