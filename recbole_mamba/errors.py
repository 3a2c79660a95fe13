"""The project's input errors: what a user gave that cannot work, said in one line.

The command lines print an :class:`InputError` as one line and exit with status 2; any other
exception is a bug and keeps its traceback. Raise them where input is checked. A leaf module:
imports nothing, so the converters and the layers may use it.
"""


class InputError(ValueError):
    """Input that cannot work (a configuration, a file, an option), with a message that says
    what is wrong and how to fix it."""


class ConfigError(InputError):
    """A configuration that cannot work: an unknown model or dataset, a value of the wrong type,
    an option that does not apply."""


class ServeError(InputError):
    """A request a recommender cannot serve: an unknown or malformed item token, an unknown user,
    an empty history, a session of another model."""


class RankLostError(RuntimeError):
    """A distributed run that lost a rank (killed, crashed, unreachable): every other rank stops
    with this one line naming it; the command line prints it and exits with status 1."""
