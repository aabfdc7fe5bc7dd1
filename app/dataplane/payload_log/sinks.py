"""Where the payload log's lines go: stdout, or a file rotated by size; `open_sink` picks the
one GLASSBOX_PAYLOAD_LOG names."""

from __future__ import annotations

import contextlib
import io
import os
import stat
import sys
from pathlib import Path
from typing import Protocol

STDOUT = "stdout"


class Sink(Protocol):
    """Where the lines go. `write` takes one whole line and raises OSError when it fails."""

    def write(self, line: bytes) -> None: ...

    def close(self) -> None: ...


def open_sink(where: str, max_bytes: int, backups: int) -> Sink:
    """`stdout`, or the file at `where`, {pid} replaced by the process id (one file a worker)."""
    if where == STDOUT:
        return Stdout()
    path = Path(where.replace("{pid}", str(os.getpid())))
    try:
        return RotatingFile(path, max_bytes, backups)
    except OSError as error:
        raise OSError(
            error.errno, f"GLASSBOX_PAYLOAD_LOG: cannot open {path} ({error.strerror})"
        ) from None


class Stdout:
    """Whatever sys.stdout is at the time (a test's capture sees the lines)."""

    def write(self, line: bytes) -> None:
        sys.stdout.write(line.decode())
        sys.stdout.flush()

    def close(self) -> None:
        pass


class RotatingFile:
    """Lines appended to a file, rotated as logging's RotatingFileHandler does it (the file
    becomes .1, .1 becomes .2, ..., the oldest goes) before a line would take it past
    `max_bytes` (0: never). A failed write is taken back, so the file never keeps half a line.
    Only a regular file is rotated or truncated (not /dev/full or a pipe)."""

    def __init__(self, path: Path, max_bytes: int, backups: int):
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        self._open()

    def _open(self) -> None:
        self._file = io.FileIO(self.path, "a")  # raw: one write call per line, no buffer
        info = os.fstat(self._file.fileno())
        self._regular = stat.S_ISREG(info.st_mode)
        self._size = info.st_size if self._regular else 0

    def write(self, line: bytes) -> None:
        if (
            self._regular
            and self.max_bytes
            and self._size
            and self._size + len(line) > self.max_bytes
        ):
            self._rotate()
        view = memoryview(line)
        try:
            while view:
                view = view[self._file.write(view) :]
        except OSError:
            if self._regular:  # a part may have been written: cut back to the last whole line
                with contextlib.suppress(OSError):  # failing that, the next line follows it
                    os.ftruncate(self._file.fileno(), self._size)
            raise
        self._size += len(line)

    def _backup(self, index: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{index}")

    def _rotate(self) -> None:
        self._file.close()
        try:
            for index in range(self.backups - 1, 0, -1):
                if self._backup(index).exists():
                    os.replace(self._backup(index), self._backup(index + 1))
            os.replace(self.path, self._backup(1))
        finally:
            self._open()

    def close(self) -> None:
        self._file.close()
