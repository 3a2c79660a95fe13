"""RecBole's keys for its own multi-GPU launch (``run_recboles``): options of the launchers here
(the command line's ``--nproc``, ``--world_size``, ``--ip``, ``--port``, ``--offset``; torchrun; Ray
Train), never of a run's config, where RecBole's Config would start its NCCL-only process group on
seeing ``local_rank``. A leaf module."""

LAUNCH_KEYS = ("nproc", "world_size", "ip", "port", "offset", "local_rank")
