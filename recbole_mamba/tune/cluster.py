"""Starting or joining Ray, for searches and grids: one call, one set of options, and a cluster
that cannot be joined said in one line.

Ray 2.60 (seen here; recent releases) turns on token authentication for clusters that ``ray.init()`` starts and for
``ray start --head`` where a token exists (``~/.ray/auth_token``). A driver that names the cluster's
address (``--ray_address=HOST:PORT``) sends the token only with ``RAY_AUTH_MODE=token``; without it
Ray retries for seconds, then raises a ConnectionError from a RuntimeError whose message holds
the AuthenticationError's traceback, which :func:`start_ray` turns into one :class:`ConfigError` line.
"""

from recbole_mamba.errors import ConfigError
from recbole_mamba.recbole_stack import require_ray


def causes(error):
    """``error`` and the exceptions it was raised from, innermost last."""
    while error is not None:
        yield error
        error = error.__cause__ or error.__context__


def start_ray(address=None):
    """``ray.init`` for this process: a new local cluster (``address`` None), or the one at
    ``address`` (``auto``: the one running on this machine). Returns the ``ray`` module."""
    require_ray()
    import ray

    try:
        ray.init(address=address, include_dashboard=False, ignore_reinit_error=True, configure_logging=False,
                 log_to_driver=False)
    except (ConnectionError, RuntimeError) as error:
        if not any(type(cause).__name__ == "AuthenticationError" or "AuthenticationError" in str(cause)
                   for cause in causes(error)):  # by name: Rays before token authentication have no such class
            raise
        raise ConfigError(
            f"the Ray cluster at {address} wants its authentication token: set RAY_AUTH_MODE=token, and "
            "RAY_AUTH_TOKEN (or the token in ~/.ray/auth_token) to the cluster's token") from None
    return ray
