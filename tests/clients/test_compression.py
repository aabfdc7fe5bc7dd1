"""Compressed bodies: Triton's clients with compression on (HTTP request and response, gzip and
deflate; gRPC), and the edges with plain HTTP: a gzip bomb (413, after at most the limit's
worth of decoding), an unknown Content-Encoding (415), a corrupt stream (400), the JSON depth
limit on the decoded body, and Accept-Encoding answered with Vary."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import zlib

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from fastapi.testclient import TestClient
from tritonclient.grpc import service_pb2, service_pb2_grpc

from app.core.settings import Settings
from app.http.app import create_app
from app.http.middleware import compression
from app.http.middleware.compression import BadBody, Inflater
from tests.conftest import MODELS
from tests.http.protocol_cases import EXAMPLES

# 64 flowers: an answer of about 4 KiB as JSON, over the size answers are compressed from.
FLOWERS = np.tile(np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], np.float32), (32, 1))
SPECIES = [0, 2] * 32
PREDICT = {"instances": FLOWERS[:2].tolist()}
JSON = {"content-type": "application/json"}


def assert_iris(probabilities) -> None:
    rows = np.asarray(probabilities, dtype=np.float64)
    assert rows.shape == (len(FLOWERS), 3)
    assert np.allclose(rows.sum(axis=1), 1.0, atol=1e-4)
    assert list(rows.argmax(axis=1)) == SPECIES


def zeros_gzip(size: int) -> bytes:
    """`size` zero bytes, gzip-compressed a MiB at a time (never all held at once)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    parts = [compressor.compress(zeros) for _ in range(size >> 20)]
    return b"".join([*parts, compressor.flush()])


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """1 GiB of zeros in about 1 MiB."""
    return zeros_gzip(1 << 30)


# -- Triton's clients against the live server --------------------------------------------------


class Decompressions:
    """The response bodies tritonclient.http decompressed (it calls gzip.decompress or
    zlib.decompress on an answer whose Content-Encoding says so)."""

    def __init__(self, monkeypatch):
        self.seen: list[str] = []
        for module, name in ((gzip, "gzip"), (zlib, "deflate")):
            real = module.decompress

            def spy(data, *args, _real=real, _name=name, **kwargs):
                self.seen.append(_name)
                return _real(data, *args, **kwargs)

            monkeypatch.setattr(module, "decompress", spy)


@pytest.mark.parametrize("response_coding", [None, "gzip", "deflate"])
@pytest.mark.parametrize("request_coding", [None, "gzip", "deflate"])
def test_tritonclient_http_compresses_either_way(
    live, monkeypatch, request_coding, response_coding
):
    client = triton_http.InferenceServerClient(live.base.removeprefix("http://"))
    features = triton_http.InferInput("features", list(FLOWERS.shape), "FP32")
    features.set_data_from_numpy(FLOWERS)
    outputs = [triton_http.InferRequestedOutput("probabilities", binary_data=False)]
    decompressions = Decompressions(monkeypatch)
    result = client.infer(
        "iris",
        [features],
        outputs=outputs,
        request_compression_algorithm=request_coding,
        response_compression_algorithm=response_coding,
    )
    assert_iris(result.as_numpy("probabilities"))
    assert decompressions.seen == ([response_coding] if response_coding else [])
    client.close()


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_tritonclient_grpc_compressed_requests(live, coding):
    client = triton_grpc.InferenceServerClient(live.grpc_target)
    features = triton_grpc.InferInput("features", list(FLOWERS.shape), "FP32")
    features.set_data_from_numpy(FLOWERS)
    result = client.infer("iris", [features], compression_algorithm=coding)
    assert_iris(result.as_numpy("probabilities"))
    client.close()


def test_a_grpc_compressed_bomb_is_resource_exhausted(live):
    """gRPC decodes messages itself and stops at grpc.max_receive_message_length (the body
    limit): 64 MiB of zeros in 64 KiB on the wire."""
    size = 64 << 20
    request = service_pb2.ModelInferRequest(
        model_name="iris",
        inputs=[
            service_pb2.ModelInferRequest.InferInputTensor(
                name="features", datatype="FP32", shape=[size // 16, 4]
            )
        ],
        raw_input_contents=[bytes(size)],
    )
    with grpc.insecure_channel(live.grpc_target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(request, compression=grpc.Compression.Gzip, timeout=60)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        ready = stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=30)
    assert ready.ready


# -- plain HTTP against the live server --------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/v1/models/iris:predict", "application/json"),
        ("/v2/models/iris/infer", "application/octet-stream"),
        ("/api/models/mnist/predict", "image/png"),
    ],
)
def test_a_gzip_bomb_is_413_on_every_surface(live, bomb, path, content_type):
    for _ in range(3):
        response = httpx.post(
            live.base + path,
            content=bomb,
            headers={"content-encoding": "gzip", "content-type": content_type},
            timeout=60,
        )
        assert response.status_code == 413, response.text
        assert response.json()["code"] == "payload_too_large"
        assert "decompresses to more than" in response.json()["error"]
    assert httpx.get(f"{live.base}/health/ready").status_code == 200


def test_a_compressed_upload_reaches_the_typed_route(live):
    plain = (EXAMPLES / "mnist.png").read_bytes()
    boundary = "glassbox"
    form = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="mnist.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + plain
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    expected = httpx.post(f"{live.base}/api/models/mnist/predict", content=form, headers=headers)
    assert expected.status_code == 200, expected.text
    for coding, compress in (("gzip", gzip.compress), ("deflate", zlib.compress)):
        response = httpx.post(
            f"{live.base}/api/models/mnist/predict",
            content=compress(form),
            headers=headers | {"content-encoding": coding},
        )
        assert response.status_code == 200, response.text
        assert response.json()["label"] == expected.json()["label"]


def test_a_streamed_multi_member_gzip_body_is_decoded(live):
    """Sent chunked, in pieces smaller than its gzip members (`cat a.gz b.gz` makes several)."""
    body = json.dumps({"instances": FLOWERS.tolist()}).encode()
    half = len(body) // 2
    sent = gzip.compress(body[:half]) + gzip.compress(body[half:])

    def pieces():
        for start in range(0, len(sent), 7):
            yield sent[start : start + 7]

    response = httpx.post(
        f"{live.base}/v1/models/iris:predict",
        content=pieces(),
        headers=JSON | {"content-encoding": "gzip"},
    )
    assert response.status_code == 200, response.text
    assert_iris(response.json()["predictions"])


def test_an_unknown_content_encoding_is_415_naming_the_supported_ones(live):
    response = httpx.post(
        f"{live.base}/v1/models/iris:predict",
        content=json.dumps(PREDICT),
        headers=JSON | {"content-encoding": "br"},
    )
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    assert "'br'" in response.json()["error"]
    assert "gzip or deflate" in response.json()["error"]
    assert response.headers["accept-encoding"] == "gzip, deflate"


@pytest.mark.parametrize(
    ("coding", "body", "words"),
    [
        ("gzip", b"this is not gzip", "not valid gzip data"),
        ("gzip", gzip.compress(json.dumps(PREDICT).encode())[:-6], "ends before"),
        ("deflate", gzip.compress(json.dumps(PREDICT).encode()), "not valid deflate"),
        ("deflate", zlib.compress(b"{}") + b"more", "after the end"),
    ],
)
def test_a_corrupt_stream_is_400_naming_the_problem(live, coding, body, words):
    response = httpx.post(
        f"{live.base}/v1/models/iris:predict",
        content=body,
        headers=JSON | {"content-encoding": coding},
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "bad_request"
    assert words in response.json()["error"]


def test_the_json_depth_limit_applies_to_the_decoded_body(live):
    response = httpx.post(
        f"{live.base}/v1/models/iris:predict",
        content=gzip.compress(b"[" * 10_000 + b"]" * 10_000),
        headers=JSON | {"content-encoding": "gzip"},
    )
    assert response.status_code == 422
    assert "nested deeper" in response.json()["error"]


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_accept_encoding_compresses_large_answers_with_vary(live, coding):
    body = {"instances": FLOWERS.tolist()}
    plain = httpx.post(
        f"{live.base}/v1/models/iris:predict", json=body, headers={"accept-encoding": "identity"}
    )
    assert "content-encoding" not in plain.headers
    response = httpx.post(
        f"{live.base}/v1/models/iris:predict", json=body, headers={"accept-encoding": coding}
    )
    assert response.headers["content-encoding"] == coding
    assert response.headers["vary"] == "Accept-Encoding"
    assert int(response.headers["content-length"]) == response.num_bytes_downloaded
    assert response.num_bytes_downloaded < len(plain.content) / 2
    assert response.json() == plain.json()


def test_small_answers_go_uncompressed(live):
    response = httpx.post(
        f"{live.base}/v1/models/iris:predict", json=PREDICT, headers={"accept-encoding": "gzip"}
    )
    assert len(response.content) < compression.MIN_SIZE
    assert "content-encoding" not in response.headers
    assert "vary" not in response.headers


def test_the_page_varies_by_accept_and_accept_encoding(live):
    browser = {"accept": "text/html,application/xhtml+xml", "accept-encoding": "gzip, br"}
    page = httpx.get(f"{live.base}/", headers=browser)
    assert page.text.lstrip().lower().startswith("<!doctype html>")
    assert page.headers["content-encoding"] == "gzip"
    assert page.headers["vary"] == "Accept, Accept-Encoding"
    assert page.headers["etag"].startswith("W/")


def test_head_answers_the_identity_length(live):
    path = f"{live.base}/static/style.css"
    head = httpx.head(path, headers={"accept-encoding": "gzip"})
    assert head.status_code == 200
    assert "content-encoding" not in head.headers
    plain = httpx.get(path, headers={"accept-encoding": "identity"})
    assert int(head.headers["content-length"]) == len(plain.content) > compression.MIN_SIZE


def test_a_file_sent_in_parts_is_compressed_in_parts(live):
    """Swagger UI's script (1.5 MB) goes out in parts: compressed as they go, chunked."""
    path = f"{live.base}/docs-assets/swagger-ui-bundle.js"
    plain = httpx.get(path, headers={"accept-encoding": "identity"})
    with httpx.stream("GET", path, headers={"accept-encoding": "gzip"}) as response:
        assert response.headers["content-encoding"] == "gzip"
        assert "content-length" not in response.headers
        raw = response.read()
    assert response.num_bytes_downloaded < len(plain.content) / 2
    assert raw == plain.content


# -- the limits, with an app of small limits ---------------------------------------------------

LIMIT = 4096


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    shutil.copytree(MODELS / "iris", root / "iris")
    settings = Settings(model_dir=root, poll_interval_s=0, max_body_bytes=LIMIT)
    with TestClient(create_app(settings)) as client:
        yield client


def padded(size: int) -> bytes:
    body = json.dumps(PREDICT).encode()
    return body + b" " * (size - len(body))


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_the_decoded_body_is_held_to_the_limit(small, coding):
    compress = gzip.compress if coding == "gzip" else zlib.compress
    headers = JSON | {"content-encoding": coding}
    at_limit = small.post(
        "/v1/models/iris:predict", content=compress(padded(LIMIT)), headers=headers
    )
    assert at_limit.status_code == 200, at_limit.text
    over = small.post(
        "/v1/models/iris:predict", content=compress(padded(LIMIT + 1)), headers=headers
    )
    assert over.status_code == 413
    assert f"limit of {LIMIT} bytes" in over.json()["error"]


def test_the_compressed_body_is_held_to_the_limit_too(small):
    noise = gzip.compress(os.urandom(LIMIT))  # incompressible: longer compressed
    response = small.post(
        "/v1/models/iris:predict", content=noise, headers=JSON | {"content-encoding": "gzip"}
    )
    assert response.status_code == 413


def test_identity_is_no_encoding(small):
    response = small.post(
        "/v1/models/iris:predict",
        content=json.dumps(PREDICT),
        headers=JSON | {"content-encoding": "identity"},
    )
    assert response.status_code == 200, response.text  # the body read as it came
    assert np.argmax(response.json()["predictions"], axis=1).tolist() == SPECIES[:2]


# -- the pieces ----------------------------------------------------------------------------------


def test_a_bomb_is_decoded_no_further_than_the_limit():
    inflater = Inflater("gzip", 1 << 20)
    with pytest.raises(BadBody) as refused:
        inflater.feed(zeros_gzip(64 << 20))
    assert refused.value.status == 413
    assert inflater.size == (1 << 20) + 1
    assert inflater.chunks == []


def test_feeding_with_a_bound_stops_there_and_resumes():
    body = os.urandom(1000) * 300  # 300 kB that compress well
    inflater = Inflater("deflate", len(body))
    rest = inflater.feed(zlib.compress(body), 4096)
    assert rest is not None
    assert inflater.size == 4096
    assert inflater.feed(rest) is None
    assert inflater.finish() == body


@pytest.mark.parametrize(
    ("header", "coding"),
    [
        (b"gzip, deflate", "gzip"),
        (b"gzip, deflate, br, zstd", "gzip"),
        (b"deflate", "deflate"),
        (b"gzip;q=0.5, deflate", "deflate"),
        (b"GZIP", "gzip"),
        (b"x-gzip", "gzip"),
        (b"*", "gzip"),
        (b"*;q=0, deflate;q=0.1", "deflate"),
        (b"gzip;q=0", None),
        (b"br", None),
        (b"identity", None),
        (b"", None),
        (b"gzip;q=nonsense", None),
    ],
)
def test_accept_encoding_is_weighed(header, coding):
    assert compression.accepted(header) == coding
