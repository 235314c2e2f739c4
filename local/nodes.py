"""A multi-node cell on this machine: its command runs once per node, N processes at once, each with the
variables its pod would have (core/multinode.py: MASTER_ADDR=127.0.0.1, NODE_RANK=K, NNODES=N, ...), so that
the command that runs in the cluster is tested here unchanged.

Every node leads its own process group, registered with the run's Stopper under the cell's name (Ctrl-C
reaches every node gently). Each output line is prefixed with `[node K]`. As in the cluster, where one
failed pod fails the Job and the others are stopped, the first node that fails stops the others: SIGTERM,
then SIGKILL KILL_AFTER seconds later; the cell's exit code is that first failure's.
"""
import os
import signal
import subprocess
import threading
import time

from toolbox.core import multinode

KILL_AFTER = 5.0
DRAIN_SECONDS = 1.0      # output still coming after a node's command ended
POLL_SECONDS = 0.1


class _Node:
    __slots__ = ("code", "exited", "proc", "rank")

    def __init__(self, rank, proc):
        self.rank, self.proc, self.exited, self.code = rank, proc, False, None


class NodeRun:
    """The processes of one multi-node cell."""

    def __init__(self, cell, command, env, stopper, write):
        self.cell, self.command, self.env, self.stopper, self.write = cell, command, env, stopper, write
        self.lock = threading.Lock()
        self.nodes = []
        self.failure = None      # (time, node) of the first node that failed
        self.stopped_at = None

    def start(self):
        for rank in range(multinode.node_count(self.cell.settings)):
            env = dict(self.env, **multinode.node_variables(self.cell.settings, rank))
            proc = subprocess.Popen(["bash", "-c", self.command], env=env, start_new_session=True,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            self.stopper.add(proc, self.cell.name)
            self.nodes.append(_Node(rank, proc))

    def _read(self, node):
        for raw in node.proc.stdout:
            line = raw.decode("utf-8", "replace")
            self.write(f"[node {node.rank}] {line if line.endswith(chr(10)) else line + chr(10)}")

    def _follow(self, node):
        reader = threading.Thread(target=self._read, args=(node,), daemon=True)
        reader.start()
        waitid = getattr(os, "waitid", None)
        if waitid is not None:   # exited but not reaped: its pid and group stay its own while we look
            try:
                waitid(os.P_PID, node.proc.pid, os.WEXITED | os.WNOWAIT)
            except ChildProcessError:
                pass
            reader.join(DRAIN_SECONDS)
            if reader.is_alive():   # what the node left running holds its output: gone with it, as in a pod
                try:
                    os.killpg(node.proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        reader.join()
        with self.lock:
            node.exited = True
        node.code = self.stopper.follow(node.proc, self.cell.name)
        with self.lock:
            if node.code != 0 and self.failure is None:
                self.failure = (time.monotonic(), node)

    def _signal_others(self, sig):
        with self.lock:
            for node in self.nodes:
                if not node.exited:
                    try:
                        os.killpg(node.proc.pid, sig)
                    except (ProcessLookupError, PermissionError):
                        pass

    def wait(self):
        """Follow every node to its end; returns the cell's exit code."""
        threads = [threading.Thread(target=self._follow, args=(node,), daemon=True) for node in self.nodes]
        for thread in threads:
            thread.start()
        killed = False
        while any(thread.is_alive() for thread in threads):
            time.sleep(POLL_SECONDS)
            failure = self.failure
            if failure is None or killed or self.stopper.stopping:
                continue
            if self.stopped_at is None:
                self.stopped_at = time.monotonic()
                self.write(f"[node {failure[1].rank}] failed ({failure[1].code}): stopping the other nodes\n")
                self._signal_others(signal.SIGTERM)
            elif time.monotonic() - self.stopped_at >= KILL_AFTER:
                killed = True
                self._signal_others(signal.SIGKILL)
        return self.failure[1].code if self.failure else 0


def run_nodes(cell, command, env, stopper, write):
    """Run a multi-node cell's nodes as local processes; returns its exit code. `write(line)` shows a line."""
    run = NodeRun(cell, command, env, stopper, write)
    try:
        run.start()
    except OSError:
        run._signal_others(signal.SIGKILL)
        raise
    return run.wait()
