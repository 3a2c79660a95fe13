"""``--nproc=N`` (RecBole's launch keys, with ``--world_size``, ``--ip``, ``--port``, ``--offset``
for several machines): this machine's ranks as forks of the process that loaded the data.

The process builds the config and the data once, then forks ``N - 1`` children and is the first
of this machine's ranks itself. The children share the parent's memory copy-on-write: the loaded
dataset, the interaction store's mapped pages and the imported libraries are held once on the
machine (independent processes, as torchrun starts, hold torch and the dataset each: an idle
process importing torch, RecBole and the plugin is about 240 MB of private memory here). Forking
is for CPU ranks: a CUDA runtime does not survive a fork, so GPU ranks start under torchrun.

A rank that dies is noticed by the others at their next collective (its sockets close); each
prints one line naming it and exits with status 1; the first process then waits for its
children and exits non-zero too.
"""

import os
import signal
import socket
import sys
import traceback

import torch

from recbole_mamba.distributed.context import DistributedContext
from recbole_mamba.errors import ConfigError, InputError, RankLostError


def free_port():
    """A TCP port free on this machine now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ForkedRanks:
    """Ranks ``offset .. offset + nproc - 1`` of ``world_size`` (default ``nproc``: one machine),
    whose rank 0 listens at ``ip:port`` (default 127.0.0.1 and a free port on one machine)."""

    def __init__(self, nproc, world_size=None, ip=None, port=None, offset=0):
        world_size = nproc if world_size is None else world_size
        if nproc < 1 or offset < 0 or offset + nproc > world_size:
            raise ConfigError(f"--nproc {nproc} ranks from --offset {offset} do not fit in --world_size {world_size}")
        if world_size > nproc and (ip is None or port is None):
            raise ConfigError(f"--world_size {world_size} spans machines: give every machine the same --ip and "
                              "--port of the machine running rank 0, and each its --offset")
        self.nproc, self.world_size, self.offset = nproc, world_size, offset
        self.ip, self.port = ip or "127.0.0.1", port or free_port()
        self.children = []  # pids, in the first process
        self.context = None

    def fork(self, device):
        """Fork this machine's other ranks: returns the :class:`DistributedContext` of the process
        it returns in (not started)."""
        if torch.device(device).type == "cuda":
            raise ConfigError("--nproc forks CPU ranks, and CUDA does not survive a fork: start GPU ranks with "
                              "torchrun --nproc_per_node=N run_recbole_mamba.py ... (docs/distributed.md)")
        os.environ.update(MASTER_ADDR=self.ip, MASTER_PORT=str(self.port))
        torch.set_num_threads(1)  # no thread pool for a child to inherit; each rank sets its own when it starts
        sys.stdout.flush()
        sys.stderr.flush()
        for local in range(1, self.nproc):
            pid = os.fork()
            if pid == 0:
                self.children = []
                self.context = DistributedContext(self.offset + local, self.world_size, local, self.nproc)
                return self.context
            self.children.append(pid)
        self.context = DistributedContext(self.offset, self.world_size, 0, self.nproc)
        return self.context

    @property
    def is_child(self):
        return self.context is not None and self.context.local_rank > 0

    def failed(self, error, quietly=False):
        """After ``error`` ended this rank's run: a child prints it (one line for a lost rank or an
        input error; nothing where ``quietly``: a Ctrl-C, which the first process reports) and
        exits 1 (130 quietly); the first process stops its children, and the caller reports."""
        if not self.is_child:
            for pid in self.children:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            self._wait()
            return
        if quietly:
            self._exit(130)
        if isinstance(error, (RankLostError, InputError)):
            print(f"run_recbole_mamba.py: error: {error}", file=sys.stderr)
        else:
            traceback.print_exception(error)
        self._exit(2 if isinstance(error, InputError) else 1)

    def finish(self, code):
        """End of the run with exit status ``code``: a child exits; the first process waits for its
        children and returns ``code``, or 1 naming the rank that failed."""
        if self.is_child:
            self._exit(code)
        failures = self._wait()
        if failures and code == 0:
            print("run_recbole_mamba.py: error: " + "; ".join(failures), file=sys.stderr)
            return 1
        return code

    def _wait(self):
        """Wait for every child: a line for each that did not exit 0."""
        failures = []
        for local, pid in enumerate(self.children, start=1):
            _, status = os.waitpid(pid, 0)
            if os.WIFSIGNALED(status):
                failures.append(f"rank {self.offset + local} (pid {pid}) was killed by signal {os.WTERMSIG(status)}")
            elif os.WEXITSTATUS(status):
                failures.append(f"rank {self.offset + local} (pid {pid}) exited with status {os.WEXITSTATUS(status)}")
        self.children = []
        return failures

    @staticmethod
    def _exit(code):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # a fork leaves without the parent's exit handlers
