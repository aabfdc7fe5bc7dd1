"""The sockets and processes of a server a test started, read from /proc (Linux): only those of
the test's own processes, since other processes on the machine come and go."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tests.ops.server import Server

LISTEN, ESTABLISHED = "0A", "01"  # TCP states as /proc/net/tcp writes them


def port_of(server: Server) -> int:
    return int(server.base.rsplit(":", 1)[1])


@dataclass(frozen=True)
class Process:
    """A process by its pid and its start time, so that a pid used again later is not taken
    for it."""

    pid: int
    started: int | None

    @classmethod
    def of(cls, pid: int) -> Process:
        stat = _stat(pid)
        return cls(pid, None if stat is None else int(stat[19]))

    def alive(self) -> bool:
        """Running: not gone, not a zombie (exited, only waiting for its parent to reap it),
        and not another process that got the pid since."""
        stat = _stat(self.pid)
        return stat is not None and stat[0] != "Z" and int(stat[19]) == self.started


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (state first), or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone, or going: its files vanish while they are read
        return None
    return text.rpartition(")")[2].split()


def alive(processes: list[Process]) -> list[Process]:
    return [process for process in processes if process.alive()]


def process_tree(root: int) -> set[int]:
    """`root` and every process under it: the processes a test started. Each process's parent
    is read from /proc/PID/stat (this kernel may lack /proc/PID/task/TID/children), and a
    process that exits meanwhile is left out."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (stat := _stat(int(name))) is not None:
            children.setdefault(int(stat[1]), []).append(int(name))
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo.extend(children.get(pid, []))
    return tree


def tcp_sockets(port: int, state: str, *, all_read: bool = False) -> set[str]:
    """The inodes of the local TCP sockets on `port` in `state` (this network namespace); with
    `all_read`, only those whose owner has read every byte received (an empty receive queue:
    a server that has read a request's head has parsed it)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
                if all_read and int(fields[4].split(":")[1], 16):
                    continue
                inodes.add(fields[9])
    return inodes


def socket_inodes(pid: int) -> list[str]:
    """The inode of each socket `pid` holds, one entry per descriptor; none once it is gone."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []
    inodes = []
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # a descriptor closed, or the process gone, meanwhile
            continue
        if target.startswith("socket:["):
            inodes.append(target[8:-1])
    return inodes


def socket_owners(port: int, state: str, pids: set[int]) -> list[int]:
    """The pid holding each local TCP socket on `port` in `state`, one entry per socket, among
    `pids` (a test's own processes)."""
    inodes = tcp_sockets(port, state)
    return [pid for pid in sorted(pids) for inode in socket_inodes(pid) if inode in inodes]


def owners_in(server: Server, port: int, state: str) -> list[int]:
    """`socket_owners` among the server's own processes: the supervisor and its workers."""
    return socket_owners(port, state, process_tree(server.process.pid))


def connections_read(server: Server) -> int:
    """Connections on the server's HTTP port that its processes hold and have read all that
    was sent on them so far."""
    inodes = tcp_sockets(port_of(server), ESTABLISHED, all_read=True)
    pids = process_tree(server.process.pid)
    return sum(inode in inodes for pid in pids for inode in socket_inodes(pid))
