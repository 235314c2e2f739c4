#!/usr/bin/env python3
"""A multi-node rendezvous in pure Python (standard library only): proves every rank reached rank 0.

Reads what torchrun reads:
    MASTER_ADDR, MASTER_PORT   where rank 0 listens (rank 0 binds every interface on MASTER_PORT)
    NODE_RANK                  this node's rank (else JOB_COMPLETION_INDEX, as an Indexed Job's pod has)
    NNODES                     how many nodes (else WORLD_SIZE)
    RENDEZVOUS_TIMEOUT         seconds to wait for the others (default 60)

Rank 0 waits until every other rank has connected and said hello, answers each, and prints
`rank 0/N: all N ranks reached rank 0 (ranks 1,2,...)`. A rank K > 0 connects to MASTER_ADDR:MASTER_PORT,
retrying while the name does not resolve or nobody listens yet, and prints `rank K/N: reached rank 0 at
ADDR:PORT`. Exit 0 on success, 1 on timeout, 2 on bad settings (one line on stderr).
"""
import os
import socket
import sys
import time

RETRY_SECONDS = 0.2


class Failure(Exception):
    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


def _int_setting(env, names, default=None):
    for name in names:
        value = env.get(name)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError:
                raise Failure(f"{name}={value!r} is not an integer", 2)
    if default is None:
        raise Failure(f"set {' or '.join(names)}", 2)
    return default


def settings(env):
    rank = _int_setting(env, ("NODE_RANK", "JOB_COMPLETION_INDEX"))
    nodes = _int_setting(env, ("NNODES", "WORLD_SIZE"))
    port = _int_setting(env, ("MASTER_PORT",))
    timeout = float(env.get("RENDEZVOUS_TIMEOUT") or 60)
    addr = env.get("MASTER_ADDR") or ""
    if not addr and rank > 0:
        raise Failure("set MASTER_ADDR", 2)
    if nodes < 1 or not 0 <= rank < nodes:
        raise Failure(f"NODE_RANK={rank} is not in 0..{nodes - 1}", 2)
    if not 0 < port < 65536:
        raise Failure(f"MASTER_PORT={port} is not a port", 2)
    return rank, nodes, addr, port, timeout


def _read_line(conn, deadline):
    data = b""
    while not data.endswith(b"\n"):
        conn.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = conn.recv(256)
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", "replace").strip()


def serve(nodes, port, timeout):
    """Rank 0: accept hellos until every other rank has said one; returns the ranks seen."""
    seen = set()
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("", port))
        server.listen(nodes)
        while len(seen) < nodes - 1:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = sorted(set(range(1, nodes)) - seen)
                raise Failure(f"rank 0/{nodes}: timed out after {timeout:g} s waiting for ranks "
                              f"{','.join(map(str, missing))}")
            server.settimeout(remaining)
            try:
                conn, _ = server.accept()
            except socket.timeout:
                continue
            with conn:
                try:
                    words = _read_line(conn, deadline).split()
                    if len(words) == 3 and words[0] == "hello" and words[2] == str(nodes):
                        rank = int(words[1])
                        if 0 < rank < nodes:
                            seen.add(rank)
                            conn.sendall(f"welcome {rank} {nodes}\n".encode())
                            continue
                    conn.sendall(b"refused\n")
                except (OSError, ValueError):
                    continue
    return sorted(seen)


def join(rank, nodes, addr, port, timeout):
    """Rank K > 0: say hello to rank 0 (retrying until it resolves and listens) and read its welcome."""
    deadline = time.monotonic() + timeout
    last_error = "no attempt"
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((addr, port), timeout=max(0.1, deadline - time.monotonic())) as conn:
                conn.sendall(f"hello {rank} {nodes}\n".encode())
                answer = _read_line(conn, deadline)
            if answer == f"welcome {rank} {nodes}":
                return
            last_error = f"rank 0 answered {answer!r}"
        except OSError as exc:  # the name does not resolve yet, nobody listens yet, or the peer went away
            last_error = str(exc) or type(exc).__name__
        time.sleep(RETRY_SECONDS)
    raise Failure(f"rank {rank}/{nodes}: could not reach rank 0 at {addr}:{port} in {timeout:g} s ({last_error})")


def main(env=None):
    env = os.environ if env is None else env
    try:
        rank, nodes, addr, port, timeout = settings(env)
        if rank == 0:
            ranks = serve(nodes, port, timeout)
            print(f"rank 0/{nodes}: all {nodes} ranks reached rank 0 (ranks {','.join(map(str, ranks)) or '-'})",
                  flush=True)
        else:
            join(rank, nodes, addr, port, timeout)
            print(f"rank {rank}/{nodes}: reached rank 0 at {addr}:{port}", flush=True)
    except Failure as exc:
        print(f"rendezvous: {exc}", file=sys.stderr, flush=True)
        return exc.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
