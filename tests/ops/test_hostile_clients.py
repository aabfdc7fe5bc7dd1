"""Hostile clients against a real server (deploy/serve.sh): slow bodies hold no model place and
are cut off with 408, connections that send nothing or never finish their head are closed, a
cap bounds open connections, and after SIGTERM a kept-alive connection answers one more request
with `Connection: close` rather than dropping it (docs/operations.md, "Deadlines and caps").

The deadlines here are short or long on purpose, never raced: each test either waits for
something the server must do (bounded generously) or relies on a deadline it cannot reach.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.ops.server import ROOT, Server, serve, wait_for
from tests.ops.sockets import ESTABLISHED, connections_read, owners_in, port_of

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads sockets from /proc")

PLACES = 4  # GLASSBOX_QUEUE_SIZE: iris requests in progress at once
CAP = 16  # GLASSBOX_MAX_CONNECTIONS
FLOWER = b'{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}'
WAIT_S = 120  # a bound on waits for what the server must do, reached only if it never does


def head(content_length: int = len(FLOWER), close: bool = False) -> bytes:
    return (
        b"POST /api/models/iris/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
        % (content_length, b"Connection: close\r\n" if close else b"")
    )


def connect(server: Server) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port_of(server)), timeout=WAIT_S)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client


def read_answer(client: socket.socket) -> tuple[int, bytes, bytes]:
    """(status, head, body) of one answer; (0, b"", b"") if the server closed first."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = client.recv(65536)
        if not chunk:
            return 0, b"", b""
        received += chunk
    answer_head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in answer_head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    )
    while len(body) < length:
        body += client.recv(65536)
    return int(answer_head.split()[1]), answer_head.lower(), body


def closed_by_server(client: socket.socket) -> bool:
    """Whether the server has closed the connection (EOF or reset), without waiting."""
    client.setblocking(False)
    try:
        return client.recv(65536) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True
    finally:
        client.setblocking(True)


def connections_held(server: Server) -> int:
    """Connections on the HTTP port the server's processes hold open."""
    return len(owners_in(server, port_of(server), ESTABLISHED))


def predict(server: Server) -> httpx.Response:
    with httpx.Client(base_url=server.base, timeout=WAIT_S) as client:
        return client.post(
            "/api/models/iris/predict",
            content=FLOWER,
            headers={"Content-Type": "application/json"},
        )


@contextlib.contextmanager
def opened(server: Server, count: int, first: bytes = b"") -> Iterator[list[socket.socket]]:
    """`count` connections, each having sent `first`; closed on the way out, and the server
    seen to let go of them."""
    clients = []
    try:
        for _ in range(count):
            clients.append(connect(server))
            if first:
                clients[-1].sendall(first)
        yield clients
    finally:
        for client in clients:
            client.close()
        wait_for(lambda: connections_held(server) == 0, "the server to close them", WAIT_S)


def iris_server(log, **settings: str) -> contextlib.AbstractContextManager[Server]:
    env = {
        "GLASSBOX_MODEL_DIR": str(ROOT / "models"),
        "GLASSBOX_MODELS": "iris",
        "GLASSBOX_QUEUE_SIZE": str(PLACES),
        **{f"GLASSBOX_{name.upper()}": value for name, value in settings.items()},
    }
    return serve(log, env)


@pytest.fixture(scope="module")
def patient(tmp_path_factory):
    """Deadlines far beyond any test (the connections a test holds stay), a small cap."""
    log = tmp_path_factory.mktemp("patient") / "server.log"
    with iris_server(
        log, body_timeout_s="600", header_timeout_s="600", max_connections=str(CAP)
    ) as running:
        yield running


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """Short deadlines, which the tests wait out."""
    log = tmp_path_factory.mktemp("strict") / "server.log"
    with iris_server(log, body_timeout_s="2", header_timeout_s="3") as running:
        yield running


def test_slow_bodies_hold_none_of_the_models_places(patient):
    """Twice as many requests as iris has places, each with its body still coming: another
    caller is answered (before, the places went to the slow bodies and it got 503)."""
    with opened(patient, 2 * PLACES, head(len(FLOWER)) + FLOWER[:1]):
        wait_for(lambda: connections_read(patient) == 2 * PLACES, "the slow requests", WAIT_S)
        response = predict(patient)
    assert response.status_code == 200, response.text
    assert response.json()["label"] == "setosa"


def test_a_body_late_past_its_deadline_is_answered_408_and_its_connection_closed(strict):
    with opened(strict, 1, head(len(FLOWER)) + FLOWER[:10]) as (client,):
        status, answer_head, body = read_answer(client)  # the server's deadline ends the wait
        assert status == 408
        assert b"connection: close" in answer_head
        assert b'"code":"request_timeout"' in body
        assert client.recv(65536) == b""  # closed: the rest cannot be told from a next request
    assert predict(strict).status_code == 200


def test_connections_that_send_nothing_or_no_whole_head_are_closed(strict):
    """Before, 2,000 silent connections and 300 unfinished heads were all open 100 s later."""
    slowloris = b"POST /api/models/iris/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
    with opened(strict, 8) as silent, opened(strict, 8, slowloris) as unfinished:
        clients = silent + unfinished
        wait_for(lambda: all(closed_by_server(c) for c in clients), "them to be closed", WAIT_S)
        assert connections_held(strict) == 0  # their descriptors are back
    assert predict(strict).status_code == 200


def test_over_the_cap_the_longest_idle_connections_are_closed_to_make_room(patient):
    """Opened one after another, more than the cap: the server never holds more than the cap,
    the oldest go first, and a new caller is served."""
    with opened(patient, CAP + 4) as clients:
        wait_for(lambda: sum(map(closed_by_server, clients[:4])) == 4, "the oldest closed", WAIT_S)
        assert not any(closed_by_server(client) for client in clients[4:])
        assert connections_held(patient) <= CAP
        assert predict(patient).status_code == 200


def test_over_the_cap_with_every_connection_busy_a_new_one_is_refused_at_once(patient):
    with opened(patient, CAP, head(len(FLOWER)) + FLOWER[:1]):
        wait_for(lambda: connections_read(patient) == CAP, "every connection busy", WAIT_S)
        with connect(patient) as refused:
            status, answer_head, body = read_answer(refused)
        assert status == 503
        assert b"retry-after: 1" in answer_head
        assert b"connection: close" in answer_head
        assert b'"code": "overloaded"' in body
    assert predict(patient).status_code == 200  # room again once they have gone


@pytest.mark.parametrize("workers", [1, 2])
def test_after_sigterm_a_kept_alive_connection_answers_its_next_request_with_close(
    tmp_path, workers
):
    """A request sent on an idle keep-alive connection once the server is draining is answered
    with `Connection: close` (before, the connection was closed under it, the request lost),
    and then the server exits 0. GLASSBOX_DRAIN_GRACE_S is long here so that no timing
    decides it; its default is half a second."""
    with (
        iris_server(tmp_path / "server.log", workers=str(workers), drain_grace_s="600") as server,
        connect(server) as client,
    ):
        wait_for(lambda: server.output().count("Application startup complete") == workers, "all")
        client.sendall(head() + FLOWER)
        status, answer_head, _ = read_answer(client)
        assert status == 200
        assert b"connection: close" not in answer_head
        server.process.send_signal(signal.SIGTERM)
        wait_for(lambda: server.output().count("Shutting down") == workers, "the drain")
        client.sendall(head() + FLOWER)
        status, answer_head, body = read_answer(client)
        assert status == 200, body
        assert b"connection: close" in answer_head
        assert client.recv(65536) == b""
        assert server.process.wait(WAIT_S) == 0
