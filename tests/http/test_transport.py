"""One write per answer: uvicorn's httptools protocol with `HeldWrites` on its transport."""

import asyncio

from uvicorn import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from app.http.transport import _JOIN_LIMIT, HeldWrites, OneWriteHttpToolsProtocol

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
    await receive()
    body = b"hello " + scope["path"].encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def served(protocol_class, data: bytes) -> RecordingTransport:
    """What a connection of `protocol_class` serving `hello` writes for `data` from a client."""
    config = Config(app=hello, http=protocol_class, lifespan="off", log_config=None)
    config.load()
    protocol = protocol_class(config, ServerState(), {}, asyncio.get_running_loop())
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(data)
    for _ in range(20):  # the app's task, then the turn that releases a held write
        await asyncio.sleep(0)
    protocol.connection_lost(None)
    return transport


def test_an_answer_goes_out_in_one_write_where_uvicorn_makes_two():
    stock = asyncio.run(served(HttpToolsProtocol, REQUEST))
    one = asyncio.run(served(OneWriteHttpToolsProtocol, REQUEST))
    assert len(stock.writes) == 2  # the head, then the body
    assert one.writes == [b"".join(stock.writes)]
    assert one.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert one.writes[0].endswith(b"\r\n\r\nhello /hello")


def test_pipelined_requests_are_answered_in_order():
    second = REQUEST.replace(b"/hello", b"/again")
    transport = asyncio.run(served(OneWriteHttpToolsProtocol, REQUEST + second))
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
