"""Who this process is in a distributed run, and the collectives the trainer needs.

A :class:`DistributedContext` comes from torchrun's environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), from the ``--nproc``
launcher (:mod:`recbole_mamba.distributed.launch`, the same variables), or from a process group
that Ray Train already set up. The backend is gloo on CPU and NCCL on CUDA; each rank gets
``cores / local ranks`` threads. Every rank records its host and pid, so that a rank whose peer
died can say which one (:meth:`DistributedContext.lost_ranks`).
"""

import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist

from recbole_mamba.errors import ConfigError

LOSS_WAIT_S = 2.0  # how long a rank whose collective failed looks for the peer that exited
DEFAULT_TIMEOUT_S = 1800  # dist_timeout: a collective that waits longer (a rank alive but stuck) fails


def usable_cores():
    """CPU cores this process may run on (its affinity, as a container or taskset limits it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _running(pid):
    """Whether process ``pid`` runs (not gone, and no zombie its parent has not reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (not Linux)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True


@dataclass
class DistributedContext:
    """One rank of ``world_size``; ``local_rank`` of ``local_world_size`` on this machine."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    threads: int = None  # torch threads of this rank; None: this machine's cores / its ranks
    peers: list = field(default_factory=list)  # (host, pid) of every rank, after init
    owns_group: bool = False  # whether start() made the process group (and stop() ends it)

    @classmethod
    def from_env(cls, environ=None):
        """The context torchrun (or the ``--nproc`` launcher) describes in ``environ``, or None
        where it describes a single process."""
        environ = os.environ if environ is None else environ
        if "RANK" not in environ or "WORLD_SIZE" not in environ:
            return None
        try:
            rank, world = int(environ["RANK"]), int(environ["WORLD_SIZE"])
            local = int(environ.get("LOCAL_RANK", rank))
            local_world = int(environ.get("LOCAL_WORLD_SIZE", world))
        except ValueError as e:
            raise ConfigError(f"torch.distributed environment: {e}") from None
        if world < 2:
            return None
        return cls(rank, world, local, local_world)

    @property
    def is_main(self):
        """Whether this rank writes files and logs (rank 0)."""
        return self.rank == 0

    def device(self, config_device):
        """The rank's device: its local GPU where the run is on CUDA (of the GPUs it sees: all of
        the machine's, or a launcher's one for it), else ``config_device``."""
        device = torch.device(config_device)
        if device.type != "cuda":
            return device
        return torch.device("cuda", self.local_rank % torch.cuda.device_count())

    def start(self, device, timeout_s=DEFAULT_TIMEOUT_S):
        """Join the process group (gloo on CPU, NCCL on CUDA; one already made, as Ray Train
        makes it, is kept), set the rank's threads, and learn every rank's host and pid."""
        device = torch.device(device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=self.rank,
                                    world_size=self.world_size, timeout=timedelta(seconds=timeout_s))
            self.owns_group = True
        # torchrun sets OMP_NUM_THREADS=1 for every rank: not followed, the machine's cores are shared out
        torch.set_num_threads(self.threads or max(1, usable_cores() // self.local_world_size))
        self.peers = self.all_gather((socket.gethostname(), os.getpid()))
        return self

    def all_gather(self, value):
        """``value`` of every rank, in rank order (picklable objects)."""
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def broadcast(self, value):
        """Rank 0's ``value``, on every rank."""
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self):
        dist.barrier()

    @contextmanager
    def main_first(self):
        """Rank 0 runs the block first (e.g. writes a store), the others once it has."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def refused_together(self, check):
        """Run ``check()``, which raises a :class:`ConfigError` to refuse the run (each rank
        measures its own device and share); a refusal on any rank is raised on every rank, as
        ``rank R of W: ...``, so that none goes on to wait for the others in a collective."""
        refusal = None
        try:
            check()
        except ConfigError as e:
            refusal = (type(e), str(e))
        for rank, refused in enumerate(self.all_gather(refusal)):
            if refused is not None:
                error_class, message = refused
                raise error_class(f"rank {rank} of {self.world_size}: {message}")

    def lost_ranks(self):
        """The ranks on this machine whose process no longer runs (a rank killed or crashed)."""
        host = socket.gethostname()
        return [rank for rank, (peer_host, pid) in enumerate(self.peers)
                if peer_host == host and rank != self.rank and not _running(pid)]

    def describe_loss(self, error, wait_s=LOSS_WAIT_S):
        """One line for a collective that failed with ``error``: which rank stopped, if known. A
        killed process's sockets close before it shows as exited, so a rank that sees its peer's
        socket close looks again for up to ``wait_s`` seconds."""
        deadline = time.monotonic() + wait_s
        lost = self.lost_ranks()
        while not lost and time.monotonic() < deadline:
            time.sleep(0.05)
            lost = self.lost_ranks()
        if lost:
            who = ", ".join(f"rank {r} (pid {self.peers[r][1]})" for r in lost)
            what = f"{who} stopped running"
        else:
            what = "another rank stopped answering (on another machine, or stuck)"
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return f"rank {self.rank}: {what}; this rank stops too ({type(error).__name__}: {first})"

    @staticmethod
    def is_collective_failure(error):
        """Whether ``error`` is a collective that failed (a peer gone, or past the timeout), not
        an error of this rank's own: torch's ``DistError``, or a backend's RuntimeError (gloo's
        'Connection reset by peer' names its source file)."""
        if isinstance(error, dist.DistError):
            return True
        text = str(error)
        return isinstance(error, RuntimeError) and ("gloo" in text or "NCCL" in text or "timed out" in text.lower())

    def stop(self):
        """End the process group this context made (one Ray Train made is Ray's)."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False
