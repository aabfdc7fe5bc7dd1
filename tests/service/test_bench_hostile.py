"""bench/hostile.py's own parts: the answers it reads off a raw connection, and its options."""

import asyncio

import pytest

from bench import hostile


def read(data: bytes):
    async def main():
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await hostile.read_answer(reader)

    return asyncio.run(main())


def test_an_answer_is_read_whole_with_its_lowercased_headers():
    status, headers = read(
        b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    )
    assert status == 408
    assert headers == {"content-length": "2", "connection": "close"}


@pytest.mark.parametrize(
    "data",
    [b"", b"HTTP/1.1 200 OK\r\nContent-Le", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}"],
)
def test_a_connection_closed_before_a_whole_answer_is_eof(data):
    with pytest.raises(EOFError):
        read(data)


def test_a_request_carries_the_key_and_its_body_length():
    sent = hostile.request(body=b"x" * 7, close=True)
    assert sent.startswith(b"POST /api/models/iris/predict HTTP/1.1\r\n")
    assert b"Content-Length: 7\r\n" in sent
    assert f"X-API-Key: {hostile.API_KEY}\r\n".encode() in sent
    assert sent.endswith(b"Connection: close\r\n\r\nxxxxxxx")


def test_every_scenario_runs_by_default_and_an_unknown_one_is_refused():
    assert hostile.parse_args([]).scenarios == list(hostile.SCENARIOS)
    assert hostile.parse_args(["idle"]).scenarios == ["idle"]
    with pytest.raises(SystemExit):
        hostile.parse_args(["nope"])
