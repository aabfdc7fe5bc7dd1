"""The protocol python -m app.serve runs: one write per answer, upgrade offers declined, and
connections bounded (head deadline, a cap, a drain that answers one more request at most)."""

import asyncio
import socket
import time

import pytest
from uvicorn import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from app.core.settings import get_settings
from app.http.framework_overrides.transport import _JOIN_LIMIT, HeldWrites, HttpProtocol

REQUEST = b"GET /hello HTTP/1.1\r\nHost: glassbox\r\n\r\n"


class RecordingTransport(asyncio.Transport):
    """What a socket transport is asked to do, recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.closed_after: int | None = None  # how many writes came before close

    def write(self, data) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed, self.closed_after = True, len(self.writes)

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name, default=None):
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def hello(scope, receive, send) -> None:
    """Answers `hello <path>`, then the request's body if it had one."""
    received = b""
    while True:
        message = await receive()
        received += message.get("body", b"")
        if not message.get("more_body"):
            break
    body = b"hello " + scope["path"].encode() + (b" " + received if received else b"")
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def loaded_config(app, protocol_class) -> Config:
    config = Config(app=app, http=protocol_class, lifespan="off", log_config=None)
    config.load()
    return config


async def served(
    protocol_class, *segments: bytes, turns: int = 20, app=hello
) -> RecordingTransport:
    """What a connection of `protocol_class` serving `app` writes for what a client sends,
    segment by segment."""
    config = loaded_config(app, protocol_class)
    protocol = protocol_class(config, ServerState(), {}, asyncio.get_running_loop())
    transport = RecordingTransport()
    protocol.connection_made(transport)
    for segment in segments:
        protocol.data_received(segment)
        for _ in range(turns):  # the app's task, then the turn that releases a held write
            await asyncio.sleep(0)
    protocol.connection_lost(None)
    return transport


def test_an_answer_goes_out_in_one_write_where_uvicorn_makes_two():
    stock = asyncio.run(served(HttpToolsProtocol, REQUEST))
    one = asyncio.run(served(HttpProtocol, REQUEST))
    assert len(stock.writes) == 2  # the head, then the body
    assert one.writes == [b"".join(stock.writes)]
    assert one.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert one.writes[0].endswith(b"\r\n\r\nhello /hello")


def test_pipelined_requests_are_answered_in_order():
    second = REQUEST.replace(b"/hello", b"/again")
    transport = asyncio.run(served(HttpProtocol, REQUEST + second))
    sent = b"".join(transport.writes)
    assert sent.count(b"HTTP/1.1 200 OK") == 2
    assert sent.index(b"hello /hello") < sent.index(b"hello /again")


def test_a_lone_write_waits_for_the_end_of_the_turn_and_no_longer():
    async def main() -> tuple[list[bytes], list[bytes]]:
        transport = RecordingTransport()
        held = HeldWrites(transport, asyncio.get_running_loop())
        held.write(b"head")
        during = list(transport.writes)
        assert held.get_write_buffer_size() == 4
        await asyncio.sleep(0)
        return during, transport.writes

    during, after = asyncio.run(main())
    assert during == []
    assert after == [b"head"]


def test_close_sends_what_is_held_first_and_a_closing_connection_drops_it():
    async def main() -> tuple[RecordingTransport, RecordingTransport]:
        loop = asyncio.get_running_loop()
        closed_by_us = RecordingTransport()
        held = HeldWrites(closed_by_us, loop)
        held.write(b"bye")
        held.close()
        dropped = RecordingTransport()
        held = HeldWrites(dropped, loop)
        held.write(b"late")
        dropped.closed = True  # the peer went away before the turn ended
        await asyncio.sleep(0)
        return closed_by_us, dropped

    closed_by_us, dropped = asyncio.run(main())
    assert closed_by_us.writes == [b"bye"]
    assert closed_by_us.closed_after == 1
    assert dropped.writes == []


def test_a_large_body_is_written_after_its_head_without_a_copy():
    async def main() -> list[bytes]:
        transport = RecordingTransport()
        held = HeldWrites(transport, asyncio.get_running_loop())
        body = b"x" * (_JOIN_LIMIT + 1)
        held.write(b"head")
        held.write(body)
        held.write(b"small")
        held.write(b"tail")
        await asyncio.sleep(0)
        return transport.writes

    writes = asyncio.run(main())
    assert [len(w) for w in writes] == [4, _JOIN_LIMIT + 1, 9]
    assert writes[2] == b"smalltail"


BODY = b'{"sepal_length": 5.1}'
# What Java's HttpClient sends on a cleartext URL by default, before any answer.
OFFER = (
    b"POST /predict HTTP/1.1\r\nHost: glassbox\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    b"Upgrade: h2c\r\nHTTP2-Settings: AAEAAEAAAAIAAAAAAAMAAAAAAAQBAAAAAAUAAEAA\r\n"
    b"Content-Type: application/json\r\n"
)
SIZED = OFFER + b"Content-Length: %d\r\n\r\n" % len(BODY)
CHUNKED = OFFER + b"Transfer-Encoding: chunked\r\n\r\n"
NEXT = b"GET /next HTTP/1.1\r\nHost: glassbox\r\n\r\n"
ANSWERED = b"hello /predict " + BODY


@pytest.mark.parametrize(
    "segments",
    [
        [SIZED + BODY],
        [SIZED, BODY],  # the body in a later segment: uvicorn's protocol answered 400
        [CHUNKED + b"%x\r\n" % len(BODY) + BODY + b"\r\n0\r\n\r\n"],
        [CHUNKED, b"%x\r\n" % len(BODY), BODY + b"\r\n", b"0\r\n\r\n"],
    ],
    ids=["sized", "sized-then-body", "chunked", "chunked-in-pieces"],
)
def test_an_h2c_upgrade_offer_is_declined_and_the_request_served_with_its_body(segments):
    stock = b"".join(asyncio.run(served(HttpToolsProtocol, *segments)).writes)
    sent = b"".join(asyncio.run(served(HttpProtocol, *segments)).writes)
    assert ANSWERED not in stock  # uvicorn's own protocol lost the body
    assert sent.startswith(b"HTTP/1.1 200 OK\r\n")
    assert sent.endswith(b"\r\n\r\n" + ANSWERED)
    assert sent.count(b"HTTP/1.1") == 1


def test_the_connection_serves_the_requests_around_a_declined_offer():
    before = NEXT.replace(b"/next", b"/before")
    transport = asyncio.run(served(HttpProtocol, before + SIZED + BODY + NEXT))
    sent = b"".join(transport.writes)
    assert sent.count(b"HTTP/1.1 200 OK") == 3
    assert sent.index(b"hello /before") < sent.index(ANSWERED) < sent.index(b"hello /next")


def test_many_offers_sent_together_are_all_answered():
    # Parsed again one after the other, not by a call within a call: 1,500 would pass
    # Python's recursion limit. Pipelined requests are answered one at a time, a few turns each.
    transport = asyncio.run(served(HttpProtocol, (SIZED + BODY) * 1500, turns=20_000))
    assert b"".join(transport.writes).count(ANSWERED) == 1500


def test_the_head_served_keeps_every_header_but_the_offer():
    seen = []

    async def headers(scope, receive, send) -> None:
        seen.append(scope["headers"])
        await hello(scope, receive, send)

    offer = SIZED.replace(b"Connection: Upgrade,", b"Connection: keep-alive, Upgrade,")
    asyncio.run(served(HttpProtocol, offer + BODY, app=headers))
    assert seen == [
        [
            (b"host", b"glassbox"),
            (b"connection", b"keep-alive"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
        ]
    ]


async def in_parts(scope, receive, send) -> None:
    """An answer in three writes, the last of them held."""
    await receive()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]}
    )
    await send({"type": "http.response.body", "body": b"hello", "more_body": True})
    await send({"type": "http.response.body", "body": b"world"})


def test_a_client_that_half_closes_gets_the_whole_answer():
    """A request and the client's FIN read in one turn: asyncio closes the transport itself
    after eof_received, so what is held must go out before."""

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        config = loaded_config(in_parts, HttpProtocol)
        state = ServerState()
        server = await loop.create_server(
            lambda: HttpProtocol(config, state, {}, loop), "127.0.0.1", 0
        )
        client = socket.create_connection(server.sockets[0].getsockname()[:2], timeout=10)
        await asyncio.sleep(0)  # the connection accepted
        client.sendall(REQUEST)
        client.shutdown(socket.SHUT_WR)
        time.sleep(0.2)  # noqa: ASYNC251 (held up on purpose: the request and the FIN read together)

        def read_to_eof() -> bytes:
            received = b""
            while chunk := client.recv(65536):
                received += chunk
            return received

        try:
            return await asyncio.to_thread(read_to_eof)
        finally:
            client.close()
            server.close()

    assert asyncio.run(main()).endswith(b"\r\n\r\nhelloworld")


# -- connections bounded -------------------------------------------------------------------------


@pytest.fixture
def bounds(monkeypatch):
    """Sets the protocol's settings (environment variables, as a worker reads them)."""

    def set_bounds(**values: object) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"GLASSBOX_{name.upper()}", str(value))
        get_settings.cache_clear()

    yield set_bounds
    monkeypatch.undo()
    get_settings.cache_clear()


class Connection:
    """One HttpProtocol on a recording transport, serving `hello`, on a shared ServerState."""

    def __init__(self, state: ServerState, config: Config) -> None:
        self.protocol = HttpProtocol(config, state, {}, asyncio.get_running_loop())
        self.transport = RecordingTransport()
        self.protocol.connection_made(self.transport)

    async def send(self, data: bytes, turns: int = 20) -> bytes:
        before = len(self.transport.writes)
        if not self.transport.closed:
            self.protocol.data_received(data)
        for _ in range(turns):
            await asyncio.sleep(0)
        return b"".join(self.transport.writes[before:])


async def until_closed(connection: Connection, bound_s: float = 30) -> None:
    """Polls until the connection is closed; the bound is reached only if it never is."""
    deadline = time.monotonic() + bound_s
    while not connection.transport.closed:
        assert time.monotonic() < deadline, "the connection was never closed"
        await asyncio.sleep(0.01)


def test_a_connection_without_a_whole_head_in_time_is_closed(bounds):
    bounds(header_timeout_s=0.05)

    async def main() -> tuple[bool, bool, bool]:
        state, config = ServerState(), loaded_config(hello, HttpProtocol)
        config.timeout_keep_alive = 600  # only the head's deadline may close one here
        silent, partial, served = (Connection(state, config) for _ in range(3))
        await partial.send(b"POST /slow HTTP/1.1\r\nHost: glassbox\r\nX-Slow: ")
        answered = await served.send(REQUEST)
        await until_closed(silent)
        await until_closed(partial)
        await asyncio.sleep(0.2)  # past the deadline: a whole head disarmed it
        return answered.endswith(b"hello /hello"), served.transport.closed, silent.transport.closed

    answered, served_closed, silent_closed = asyncio.run(main())
    assert answered
    assert silent_closed
    assert not served_closed


def test_over_the_cap_the_longest_idle_connection_makes_room(bounds):
    bounds(max_connections=2)

    async def main() -> tuple[Connection, Connection, Connection]:
        state, config = ServerState(), loaded_config(hello, HttpProtocol)
        oldest = Connection(state, config)
        await oldest.send(REQUEST)
        newer = Connection(state, config)
        await newer.send(REQUEST)
        third = Connection(state, config)
        return oldest, newer, third

    oldest, newer, third = asyncio.run(main())
    assert oldest.transport.closed
    assert not newer.transport.closed
    assert not third.transport.closed


def test_over_the_cap_with_every_connection_busy_the_new_one_is_refused_503(bounds):
    bounds(max_connections=2)
    unfinished = b"POST /slow HTTP/1.1\r\nHost: glassbox\r\nContent-Length: 10\r\n\r\n"

    async def main() -> tuple[bool, Connection]:
        state, config = ServerState(), loaded_config(hello, HttpProtocol)
        busy = [Connection(state, config) for _ in range(2)]
        for connection in busy:
            await connection.send(unfinished)  # a request in progress, its body awaited
        refused = Connection(state, config)
        await asyncio.sleep(0)
        # Read before the loop ends: its end cancels the requests, which closes them.
        return any(connection.transport.closed for connection in busy), refused

    busy_closed, refused = asyncio.run(main())
    assert not busy_closed
    assert refused.transport.closed
    answer = b"".join(refused.transport.writes)
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"retry-after: 1\r\n" in answer
    assert b"connection: close\r\n" in answer
    assert answer.endswith(b'"code": "overloaded"}')


def test_after_shutdown_an_idle_connection_answers_one_more_request_with_close(bounds):
    bounds(drain_grace_s=30)

    async def main() -> tuple[bytes, bytes, bool]:
        state, config = ServerState(), loaded_config(hello, HttpProtocol)
        connection = Connection(state, config)
        first = await connection.send(REQUEST)
        connection.protocol.shutdown()
        last = await connection.send(REQUEST + REQUEST)  # the second is not taken
        return first, last, connection.transport.closed

    first, last, closed = asyncio.run(main())
    assert b"connection: close" not in first.lower()
    assert last.count(b"HTTP/1.1 200 OK") == 1
    assert b"connection: close\r\n" in last
    assert closed


def test_after_shutdown_an_idle_connection_closes_once_its_grace_is_over(bounds):
    bounds(drain_grace_s=0.05)

    async def main() -> bool:
        state, config = ServerState(), loaded_config(hello, HttpProtocol)
        connection = Connection(state, config)
        await connection.send(REQUEST)
        connection.protocol.shutdown()
        opened_after = not connection.transport.closed
        await until_closed(connection)
        return opened_after

    assert asyncio.run(main())  # not closed at once: a request may be on its way


def test_a_connection_accepted_as_the_server_drains_answers_once_and_closes(bounds):
    """uvicorn tells the connections it knows of to shut down; one accepted in the same turn
    as the listening socket closed was not among them, and served its client until the
    graceful timeout."""
    bounds(drain_grace_s=30)

    async def main() -> tuple[bytes, bool]:
        state, config = ServerState(), loaded_config(hello, HttpProtocol)
        known = Connection(state, config)
        known.protocol.shutdown()
        late = Connection(state, config)
        answer = await late.send(REQUEST)
        return answer, late.transport.closed

    answer, closed = asyncio.run(main())
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert b"connection: close\r\n" in answer
    assert closed
