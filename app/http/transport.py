"""The HTTP/1.1 protocol `python -m app.serve` runs: uvicorn's httptools protocol, changed twice.

- **One write per answer.** uvicorn writes a response's status line and headers as soon as the
  app sends `http.response.start`, and the body in a second write: two `send` system calls and,
  with Nagle's algorithm off, two TCP segments for an answer of a few hundred bytes, so the
  client wakes twice too. Here a write is held until the next write on the connection, which
  takes it along, or until the end of the event loop's turn, whichever comes first. The head and
  body of an answer are sent by one task step, so the body goes out at once with its head, and
  nothing waits past the turn it was written in.
- **An upgrade offer it does not take is ignored**, as RFC 9110 (7.8) lets a server do, and the
  request is served as plain HTTP/1.1. Java's `HttpClient` (HTTP/2 by default) and Spring's
  `RestClient` offer `Upgrade: h2c` on every cleartext request. uvicorn's httptools protocol
  then handed the app an empty body (a JSON prediction was answered 422, "Field required"),
  answered 400 when the body came in a later segment, and lost the connection's next request
  (uvicorn issue 2722). Here such a request is parsed again without its offer. WebSocket
  upgrades go to uvicorn as before.

`python -m app.serve` runs uvicorn with this protocol unless `--http` names another
(docs/performance.md, "One write per answer"; docs/operations.md).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_JOIN_LIMIT = 64 * 1024  # bytes; past it a body is written on its own after the held head
_OFFER_HEADERS = (b"upgrade", b"http2-settings")  # what an upgrade offer adds to a request


class HttpProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._declining = False  # the request being parsed offers an upgrade not taken

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(cast(asyncio.Transport, HeldWrites(transport, self.loop)))

    def eof_received(self) -> None:
        # The client has half-closed. asyncio closes the transport itself when this returns,
        # not through the wrapper, so what is held goes out first or would be lost (an answer
        # cut short of its content-length).
        cast(HeldWrites, self.transport).release()
        super().eof_received()

    def data_received(self, data: bytes) -> None:
        # uvicorn's, but a declined offer's request is parsed again, which needs the parser's
        # offset; a loop, not a call again, for many such requests sent together.
        self._unset_keepalive_if_required()
        while True:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
            except httptools.HttpParserUpgrade as upgrade:
                if self._declining:
                    # Its head without the offer, then what followed the head, through a new
                    # parser: llhttp stops at an upgrade and reads no further.
                    data = self._head_without_offer() + data[upgrade.args[0] :]
                    self.parser = httptools.HttpRequestParser(self)
                    self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
                    self._declining = False
                    continue
                if self._should_upgrade():
                    self.handle_websocket_upgrade()
                else:
                    self._unsupported_upgrade_warning()
            return

    def on_headers_complete(self) -> None:
        if self._declines_upgrade():
            self._declining = True  # no cycle for it: it is parsed again (data_received)
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._declining:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._declining:
            super().on_message_complete()

    def _declines_upgrade(self) -> bool:
        """Whether the request offers an upgrade that is not a WebSocket's (CONNECT, which
        always switches protocols, is uvicorn's to refuse)."""
        return (
            self.parser.should_upgrade()
            and not self._should_upgrade()
            and self.parser.get_method() != b"CONNECT"
        )

    def _head_without_offer(self) -> bytes:
        version = self.parser.get_http_version().encode("ascii")
        lines = [self.parser.get_method(), b" ", self.url, b" HTTP/", version, b"\r\n"]
        for name, value in self.headers:
            if name in _OFFER_HEADERS:
                continue
            if name == b"connection":
                tokens = [token.strip() for token in value.split(b",")]
                value = b", ".join(t for t in tokens if t and t.lower() not in _OFFER_HEADERS)
                if not value:
                    continue
            lines += [name, b": ", value, b"\r\n"]
        lines.append(b"\r\n")
        return b"".join(lines)


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
            self._loop.call_soon(self.release)
        else:
            self._held = None
            if len(data) > _JOIN_LIMIT:  # a large body: two writes cost less than its copy
                self._transport.write(held)
                self._transport.write(data)
            else:
                self._transport.write(held + data)

    def writelines(self, lines: Any) -> None:
        self.write(b"".join(lines))

    def release(self) -> None:
        """Write what is held now."""
        held, self._held = self._held, None
        # A connection the peer dropped is closing: its answer has nowhere to go.
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self.release()
        self._transport.close()

    def abort(self) -> None:
        # What was written before the abort had left already without the wrapper.
        self.release()
        self._transport.abort()

    def write_eof(self) -> None:
        self.release()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def __getattr__(self, name: str) -> Any:
        # is_closing, get_extra_info, pause_reading, resume_reading, set_protocol, ...
        return getattr(self._transport, name)
