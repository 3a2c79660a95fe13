"""The reference study's grid: an experiment yaml -> cells on Ray -> tables and plots
(``run_recbole_mamba.py --experiment=FILE``)."""

from recbole_mamba.experiment.runner import run_experiment, write_reports
from recbole_mamba.experiment.spec import Cell, Experiment, load_experiment, parse_experiment

__all__ = ["Cell", "Experiment", "load_experiment", "parse_experiment", "run_experiment", "write_reports"]
