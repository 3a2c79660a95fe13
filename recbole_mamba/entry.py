"""The command line's entry point (``run_recbole_mamba.py``, the ``recbole-mamba`` script): the
command line imported so that a stack it cannot run on (RecBole missing, numpy 1: see
:mod:`recbole_mamba.recbole_stack`) is one line and exit status 2, as every input error is."""

import sys

from recbole_mamba.errors import InputError


def main(argv=None):
    try:
        from recbole_mamba.cli import main as cli_main
    except InputError as error:
        print(f"run_recbole_mamba.py: error: {error}", file=sys.stderr)
        return 2
    return cli_main(argv)
