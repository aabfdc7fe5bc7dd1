"""uvicorn's httptools protocol, with an answer's head and body sent in one write.

uvicorn writes a response's status line and headers as soon as the app sends
`http.response.start`, and the body in a second write: two `send` system calls and, with
Nagle's algorithm off, two TCP segments for an answer of a few hundred bytes, so the client
wakes twice too. Here a write is held until the next write on the connection, which takes it
along, or until the end of the event loop's turn, whichever comes first. The head and body of
an answer are sent by one task step, so the body goes out at once with its head, and nothing
waits past the turn it was written in. `python -m app.serve` runs uvicorn with this protocol
unless `--http` names another (docs/performance.md, "One write per answer").
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_JOIN_LIMIT = 64 * 1024  # bytes; past it a body is written on its own after the held head


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(cast(asyncio.Transport, HeldWrites(transport, self.loop)))


class HeldWrites:
    """A transport that holds a write until the next one or the end of the loop's turn, and
    passes everything else to the transport it wraps."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is None:
            self._held = bytes(data)
            self._loop.call_soon(self._release)
        else:
            self._held = None
            if len(data) > _JOIN_LIMIT:  # a large body: two writes cost less than its copy
                self._transport.write(held)
                self._transport.write(data)
            else:
                self._transport.write(held + data)

    def writelines(self, lines: Any) -> None:
        self.write(b"".join(lines))

    def _release(self) -> None:
        held, self._held = self._held, None
        # A connection the peer dropped is closing: its answer has nowhere to go.
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self._release()
        self._transport.close()

    def write_eof(self) -> None:
        self._release()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def __getattr__(self, name: str) -> Any:
        # is_closing, get_extra_info, pause_reading, resume_reading, abort, set_protocol, ...
        return getattr(self._transport, name)
