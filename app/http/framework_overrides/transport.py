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

- **Connections are bounded** (docs/operations.md, "Deadlines and caps"). A connection must
  send its request head within `GLASSBOX_HEADER_TIMEOUT_S` of opening it or of starting the
  head, or it is closed (a sweep of the connections every quarter of the deadline): uvicorn's
  keep-alive timer starts only after an answer, so a connection that never sent a request, or
  never finished its head, stayed open for good. At
  `GLASSBOX_MAX_CONNECTIONS` open connections a new one closes the longest-idle connection
  that has no request in progress, or, when every connection is busy, is answered 503 and
  closed, so that a flood of connections cannot use up the process's file descriptors.
- **A drain that stops taking requests.** On shutdown uvicorn closes idle connections and
  lets a busy one finish its request, but a connection accepted just before the listening
  socket closed, and not yet known to it, served its client until the graceful timeout (two
  workers: 5 s of answers after SIGTERM). Here every connection of a stopping server answers at
  most one more request, with `Connection: close`; an idle one is given `GLASSBOX_DRAIN_GRACE_S`
  for a request its client may already have sent, then closed.

`python -m app.serve` runs uvicorn with this protocol unless `--http` names another
(docs/performance.md, "One write per answer"; docs/operations.md).
"""

from __future__ import annotations

import asyncio
import json
import weakref
from typing import Any, cast

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from app.core.settings import get_settings

_JOIN_LIMIT = 64 * 1024  # bytes; past it a body is written on its own after the held head
_OFFER_HEADERS = (b"upgrade", b"http2-settings")  # what an upgrade offer adds to a request
_REFUSAL_BODY = json.dumps(
    {"error": "The server has too many open connections. Retry shortly.", "code": "overloaded"}
).encode()
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\nconnection: close\r\n"
    b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
    % (len(_REFUSAL_BODY), _REFUSAL_BODY)
)
_draining: weakref.WeakSet[ServerState] = weakref.WeakSet()  # servers that are shutting down


class HttpProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._declining = False  # the request being parsed offers an upgrade not taken
        self._draining = False  # answer at most one more request, then close
        self._head_since: float | None = None  # loop time a head began to be awaited
        self._idle_since = self.loop.time()
        settings = get_settings()
        self._header_timeout_s = settings.header_timeout_s
        self._max_connections = settings.max_connections
        self._drain_grace_s = settings.drain_grace_s

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(cast(asyncio.Transport, HeldWrites(transport, self.loop)))
        if len(self.connections) > self._max_connections and not self._close_longest_idle():
            self.logger.warning("Refused a connection: %d are open.", len(self.connections) - 1)
            self.transport.write(_REFUSAL)
            self.transport.close()
            return
        self._head_since = self.loop.time()
        _sweep_soon(self.server_state, self.loop, self._header_timeout_s)
        if self.server_state in _draining:  # accepted as the listening socket closed
            self.shutdown()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_since is None:
            self._head_since = self.loop.time()

    def on_response_complete(self) -> None:
        self._idle_since = self.loop.time()
        super().on_response_complete()

    def shutdown(self) -> None:
        _draining.add(self.server_state)
        self._draining = True
        if self._idle():
            self.loop.call_later(self._drain_grace_s, self._close_if_idle)
        else:
            self.cycle.keep_alive = False

    def _idle(self) -> bool:
        """No request in progress (a head may be arriving)."""
        return self.cycle is None or self.cycle.response_complete

    def _close_if_idle(self) -> None:
        if self._idle() and not self.transport.is_closing():
            self.transport.close()

    def _close_longest_idle(self) -> bool:
        """Close the connection that has waited longest without a request in progress, to
        make room for this one; False when there is none."""
        idle = [
            connection
            for connection in self.connections
            if connection is not self
            and isinstance(connection, HttpProtocol)
            and connection._idle()
            and not connection.transport.is_closing()
        ]
        if not idle:
            return False
        min(idle, key=lambda connection: connection._idle_since).transport.close()
        return True

    def close_if_head_overdue(self, now: float) -> None:
        """Closed when no whole request head came in time since the connection opened, or
        since a head began."""
        since = self._head_since
        if since is not None and now - since >= self._header_timeout_s and self._idle():
            self._head_since = None
            if not self.transport.is_closing():
                self.transport.close()

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
        self._head_since = None
        super().on_headers_complete()
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False  # its answer says `Connection: close`, then closes

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


# One sweep of a server's connections every quarter of the head's deadline (at most a
# second), rather than a timer armed and cancelled for every request (about 3 us each, and a
# heap of cancelled timers): a head deadline ends within that quarter after it passes.
_sweeps: weakref.WeakKeyDictionary[ServerState, asyncio.TimerHandle] = weakref.WeakKeyDictionary()


def _sweep_soon(state: ServerState, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
    if state not in _sweeps:
        _sweeps[state] = loop.call_later(min(1.0, timeout_s / 4), _sweep, state, loop, timeout_s)


def _sweep(state: ServerState, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
    del _sweeps[state]
    now = loop.time()
    for connection in list(state.connections):
        if isinstance(connection, HttpProtocol):
            connection.close_if_head_overdue(now)
    if state.connections:
        _sweep_soon(state, loop, timeout_s)


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
