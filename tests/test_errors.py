"""The exception tree, mapped to HTTP statuses, error codes and SSE frames in one place."""

from __future__ import annotations

import re

import pytest

from promptcast import errors
from promptcast.errors import (
    InvalidField,
    InvalidJSON,
    ModelNotFound,
    ModelUnavailable,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    PromptcastError,
    SSEProtocolError,
    StreamTimeout,
    UnsupportedMediaType,
    UpstreamError,
    error_payload,
)

TABLE: list[tuple[type[PromptcastError], int, str, str]] = [
    # class, HTTP status, code, SSE event
    (PromptcastError, 500, "internal_error", "error"),
    (InvalidJSON, 400, "invalid_json", "error"),
    (UnsupportedMediaType, 415, "unsupported_media_type", "error"),
    (PayloadTooLarge, 413, "payload_too_large", "error"),
    (InvalidField, 422, "invalid_request", "error"),
    (ModelNotFound, 404, "model_not_found", "error"),
    (ModelUnavailable, 422, "model_unavailable", "error"),
    (NotFound, 404, "not_found", "error"),
    (Overloaded, 503, "overloaded", "error"),
    (StreamTimeout, 504, "timeout", "timeout"),
    (SSEProtocolError, 502, "bad_upstream_stream", "error"),
    (UpstreamError, 502, "upstream_error", "error"),
]


@pytest.mark.parametrize(("cls", "status", "code", "event"), TABLE)
def test_status_code_and_event(
    cls: type[PromptcastError], status: int, code: str, event: str
) -> None:
    error = cls("something went wrong")
    assert (error.http_status, error.error_code, error.sse_event) == (status, code, event)
    assert (error.status, error.code) == (status, code)
    assert error.message == str(error) == "something went wrong"
    assert isinstance(error, PromptcastError)


CLASSES = [
    obj for obj in vars(errors).values()
    if isinstance(obj, type) and issubclass(obj, PromptcastError)
]


def test_every_error_class_has_its_own_code() -> None:
    codes = [cls.code for cls in CLASSES]
    assert len(codes) == len(set(codes)), codes
    for cls in CLASSES:
        assert 400 <= cls.status <= 599, cls


def _documented() -> dict[str, tuple[int, str]]:
    """The tree drawn in errors.py's docstring: class -> (status, code)."""
    tree = re.findall(r"^\s*(?:[├└]── )?([A-Z]\w+)\s+(\d{3}) (\w+)", errors.__doc__ or "", re.M)
    return {name: (int(status), code) for name, status, code in tree}


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_the_documented_tree_matches_every_class(cls: type[PromptcastError]) -> None:
    documented = _documented()
    assert cls.__name__ in documented, f"{cls.__name__} is missing from errors.py's tree"
    assert documented[cls.__name__] == (cls.status, cls.code)


@pytest.mark.parametrize(
    ("upstream_status", "status", "code"),
    [
        (None, 502, "upstream_error"),
        (400, 502, "upstream_error"),
        (401, 502, "upstream_unauthorized"),  # our key is wrong: not the client's fault
        (403, 502, "upstream_forbidden"),
        (404, 502, "upstream_not_found"),
        (429, 429, "upstream_rate_limited"),
        (500, 502, "upstream_error"),
        (502, 502, "upstream_error"),
        (503, 503, "upstream_unavailable"),
        (504, 502, "upstream_error"),
    ],
)
def test_upstream_status_picks_ours(upstream_status: int | None, status: int, code: str) -> None:
    error = UpstreamError("the model said no", upstream_status=upstream_status)
    assert (error.http_status, error.error_code) == (status, code)
    assert error.body()["error"]["code"] == code
    assert error_payload(error)["code"] == code


def test_upstream_rate_limit_keeps_retry_after() -> None:
    error = UpstreamError("slow down", upstream_status=429, headers={"Retry-After": "7"})
    assert error.http_status == 429
    assert error.headers == {"Retry-After": "7"}


def test_explicit_code_wins_over_the_upstream_status() -> None:
    error = UpstreamError("dropped", upstream_status=503, code="upstream_closed")
    assert (error.http_status, error.error_code) == (503, "upstream_closed")
    assert error.body()["error"]["code"] == "upstream_closed"


def test_headers_default_to_empty_and_are_not_shared() -> None:
    first, second = PromptcastError("a"), Overloaded("b")
    first.headers["X"] = "1"
    assert second.headers == {}
    assert Overloaded("c", headers={"Retry-After": "1"}).headers == {"Retry-After": "1"}


@pytest.mark.parametrize(
    ("error", "body"),
    [
        (InvalidField("`prompt` is required", field="prompt"),
         {"error": {"code": "invalid_request", "message": "`prompt` is required",
                    "field": "prompt"}}),
        (ModelNotFound("unknown model 'x'", field="model"),
         {"error": {"code": "model_not_found", "message": "unknown model 'x'",
                    "field": "model"}}),
        (InvalidJSON("not JSON"), {"error": {"code": "invalid_json", "message": "not JSON"}}),
        (UpstreamError("boom", upstream_status=401),
         {"error": {"code": "upstream_unauthorized", "message": "boom"}}),
        (StreamTimeout("too slow"), {"error": {"code": "timeout", "message": "too slow"}}),
    ],
)
def test_body_shape(error: PromptcastError, body: dict[str, object]) -> None:
    assert error.body() == body


@pytest.mark.parametrize(
    ("error", "payload"),
    [
        (StreamTimeout("no first token within 30 s"),
         {"code": "timeout", "message": "no first token within 30 s"}),
        (UpstreamError("gone", code="upstream_closed"),
         {"code": "upstream_closed", "message": "gone"}),
        (InvalidField("bad", field="prompt"), {"code": "invalid_request", "message": "bad"}),
        (SSEProtocolError("line too long"),
         {"code": "bad_upstream_stream", "message": "line too long"}),
    ],
)
def test_error_payload_is_code_and_message_only(
    error: PromptcastError, payload: dict[str, str]
) -> None:
    assert error_payload(error) == payload
