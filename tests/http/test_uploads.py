"""The typed image routes read their multipart upload themselves (app/http/routes/uploads.py).
As with FastAPI's form handling: the last `file` part counts, a missing or empty one is the same
422. Unlike it: a `file` field without a filename is read, a body that does not end with its
closing boundary is refused, and a body of many parts or padded boundaries is refused before
parsing."""

import pytest

from app.http.routes import uploads
from app.http.routes.uploads import MAX_PARTS
from tests.http.test_errors import error_of

EXAMPLE = "app/examples/mnist.png"
BOUNDARY = "glassbox-test-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


@pytest.fixture(scope="module")
def digit() -> bytes:
    with open(EXAMPLE, "rb") as image:
        return image.read()


def part(name: str, data: bytes, filename: str | None = "d.png") -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
    if filename:
        head += "Content-Type: image/png\r\n"
    return head.encode() + b"\r\n" + data + b"\r\n"


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def post(client, content, path="/api/models/mnist/predict?return_input=true", media=MULTIPART):
    return client.post(path, content=content, headers={"Content-Type": media})


@pytest.fixture(scope="module")
def expected(app_client, digit):
    response = app_client.post(
        "/api/models/mnist/predict?return_input=true", files={"file": ("d.png", digit)}
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_other_fields_around_the_file_are_ignored(app_client, digit, expected):
    content = body(part("note", b"hello", None), part("file", digit), part("extra", b"x", None))
    assert post(app_client, content).json() == expected


def test_the_last_of_two_file_fields_is_used(app_client, digit, expected):
    other = part("file", b"not an image at all")
    assert post(app_client, body(other, part("file", digit))).json() == expected
    assert post(app_client, body(part("file", digit), other)).status_code == 415


def test_a_file_among_many_fields_is_found_up_to_the_part_limit(app_client, digit, expected):
    fields = [part(f"f{index}", b"x", None) for index in range(MAX_PARTS - 1)]
    assert post(app_client, body(*fields, part("file", digit))).json() == expected


@pytest.mark.parametrize("count", [MAX_PARTS, 100_000])
def test_a_body_of_more_parts_than_the_limit_is_422(app_client, digit, count):
    """Parsing each part costs Python work: 100,000 tiny parts took 1.1 s before the limit."""
    fields = [part(f"f{index}", b"x", None) for index in range(count)]
    problem = error_of(post(app_client, body(part("file", digit), *fields)), 422)
    assert problem.field == "body"
    assert f"more than {MAX_PARTS} parts" in problem.error


def test_a_large_body_is_parsed_off_the_event_loop_with_the_same_answer(
    app_client, digit, expected, threads_used
):
    filler = part("note", b"x" * uploads.INLINE_PARSE_BYTES, None)
    assert post(app_client, body(filler, part("file", digit))).json() == expected
    assert post(app_client, body(part("file", digit))).json() == expected
    assert threads_used.count("_last_part") == 1


def test_a_file_sent_as_a_plain_field_without_filename_is_read(app_client, digit, expected):
    assert post(app_client, body(part("file", digit, filename=None))).json() == expected


def test_a_body_that_arrives_in_small_chunks_is_read_whole(app_client, digit, expected):
    content = body(part("file", digit))
    chunks = (content[start : start + 7] for start in range(0, len(content), 7))
    assert post(app_client, chunks).json() == expected


@pytest.mark.parametrize(
    ("content", "media"),
    [
        (body(part("image", b"\x89PNG")), MULTIPART),  # the wrong field name
        (body(), MULTIPART),  # no parts at all
        (b'{"file": "abc"}', "application/json"),
        (b"\x89PNG\r\n", "image/png"),
        (body(part("file", b"", filename="")), MULTIPART),  # a browser form, no file chosen
        (body(part("file", b"", filename=None)), MULTIPART),
        (body(part("file", b""), part("file", b"", filename=None)), MULTIPART),  # the last counts
    ],
    ids=["wrong-field", "no-parts", "json", "raw-image", "no-file", "empty-field", "empty-last"],
)
def test_no_file_field_is_422_naming_it(app_client, content, media):
    problem = error_of(post(app_client, content, media=media), 422)
    assert problem.field == "file"
    assert problem.error == "file: Field required"
    assert problem.details[0]["type"] == "missing"


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (part("file", b"\x89PNG"), "closing boundary"),  # cut off before the end
        (b"no boundary here at all", "Expected boundary character"),
        (f"--{BOUNDARY}\r\nContent-Disposition form-data\r\n\r\n".encode(), "invalid character"),
    ],
    ids=["truncated", "no-boundary-line", "malformed-header"],
)
def test_a_multipart_body_that_does_not_parse_is_422_naming_the_body(app_client, content, phrase):
    problem = error_of(post(app_client, content), 422)
    assert problem.field == "body"
    assert phrase in problem.error
    assert problem.error.startswith("The request body could not be parsed")


@pytest.mark.parametrize(
    ("content", "media", "phrase"),
    [
        (b"--" + b"b" * 300 + b"--\r\n", "multipart/form-data; boundary=" + "b" * 300, "Boundary"),
        (part("file", b"x") + f"--{BOUNDARY}".encode() + b" " * 100_000, MULTIPART, "padding"),
    ],
    ids=["boundary-over-256-bytes", "padding-after-a-boundary"],
)
def test_a_hostile_multipart_framing_is_422_naming_the_body(app_client, content, media, phrase):
    problem = error_of(post(app_client, content, media=media), 422)
    assert problem.field == "body"
    assert phrase in problem.error
    assert problem.error.startswith("The request body could not be parsed")


@pytest.mark.parametrize("route", ["predict", "trace", "explain"])
def test_the_upload_routes_document_a_required_file_field(app_client, route):
    operation = app_client.get("/openapi.json").json()["paths"][f"/api/models/mnist/{route}"]
    schema = operation["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert schema["required"] == ["file"]
    field = schema["properties"]["file"]
    # A file in both OpenAPI 3.1's words and 3.0's: generators that read only the 3.0 form
    # (openapi-python-client) made a string of it without `format: binary`.
    assert field["contentMediaType"] == "application/octet-stream"
    assert (field["type"], field["format"]) == ("string", "binary")


def test_the_trace_route_reads_the_upload_too(app_client, digit, expected):
    response = post(app_client, body(part("file", digit)), path="/api/models/mnist/trace")
    assert response.status_code == 200, response.text
    prediction = response.json()["prediction"]  # the predict route's answer to the same file
    assert (prediction["label"], prediction["class_index"]) == (
        expected["label"],
        expected["class_index"],
    )
    assert prediction["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-6)
