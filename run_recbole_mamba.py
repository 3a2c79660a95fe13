"""Train and evaluate a sequential recommender: ``python run_recbole_mamba.py --help``."""

import sys

from recbole_mamba.entry import main

if __name__ == "__main__":
    sys.exit(main())
