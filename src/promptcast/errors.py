"""promptcast's exceptions, and the one place they map to HTTP statuses and SSE frames.

    PromptcastError                      500 internal_error
    ├── Unauthorized                     401 unauthorized      (no API key; WWW-Authenticate)
    ├── Forbidden                        403 forbidden         (an API key we do not know)
    ├── RateLimited                      429 rate_limited      (requests per minute; Retry-After)
    ├── TooManyStreams                   429 too_many_streams  (concurrent streams; Retry-After)
    ├── InvalidJSON                      400 invalid_json
    ├── UnsupportedMediaType             415 unsupported_media_type
    ├── PayloadTooLarge                  413 payload_too_large
    ├── InvalidField                     422 invalid_request   (names the field)
    ├── ModelNotFound                    404 model_not_found   (lists the models)
    ├── ModelUnavailable                 422 model_unavailable (names the variable to set)
    ├── NotFound                         404 not_found
    ├── LibraryOff                       404 library_off       (a NotFound: no database configured)
    ├── Conflict                         409 conflict          (a name already taken)
    ├── PreconditionFailed               412 precondition_failed (a stale If-Match)
    ├── Overloaded                       503 overloaded
    ├── StoreUnavailable                 503 store_unavailable (the streams store is down)
    ├── StoreFull                        503 store_full
    ├── DatabaseUnavailable              503 database_unavailable (the library's database)
    ├── StreamTooLarge                   413 stream_too_large  (a resumable stream's cap)
    ├── StreamStopped                    409 cancelled / abandoned (a resumable stream ended early)
    ├── ProducerLost                     502 producer_lost     (the replica generating it died)
    ├── ClientGone                       499 client_closed     (nobody is left to answer)
    ├── StreamTimeout                    504 timeout           (an `event: timeout` mid-stream)
    ├── SSEProtocolError                 502 bad_upstream_stream
    └── UpstreamError                    502 upstream_error    (status chosen from the upstream's)

Before the first byte an error becomes `{"error": {"code", "message", "field"?}}`
with its status; after it, an `event: error` (or `event: timeout`) frame.
"""

from __future__ import annotations

from typing import Any, ClassVar


class PromptcastError(Exception):
    """Base of every error promptcast reports to a client."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    sse_event: ClassVar[str] = "error"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body of the HTTP error response."""
        error: dict[str, Any] = {"code": self.error_code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}

    @property
    def error_code(self) -> str:
        return self.code

    @property
    def http_status(self) -> int:
        return self.status


class Unauthorized(PromptcastError):
    status = 401
    code = "unauthorized"


class Forbidden(PromptcastError):
    status = 403
    code = "forbidden"


class RateLimited(PromptcastError):
    status = 429
    code = "rate_limited"


class TooManyStreams(PromptcastError):
    status = 429
    code = "too_many_streams"


class InvalidJSON(PromptcastError):
    status = 400
    code = "invalid_json"


class UnsupportedMediaType(PromptcastError):
    status = 415
    code = "unsupported_media_type"


class PayloadTooLarge(PromptcastError):
    status = 413
    code = "payload_too_large"


class InvalidField(PromptcastError):
    status = 422
    code = "invalid_request"


class ModelNotFound(PromptcastError):
    status = 404
    code = "model_not_found"


class ModelUnavailable(PromptcastError):
    status = 422
    code = "model_unavailable"


class NotFound(PromptcastError):
    status = 404
    code = "not_found"


class LibraryOff(NotFound):
    code = "library_off"


class Conflict(PromptcastError):
    status = 409
    code = "conflict"


class PreconditionFailed(PromptcastError):
    status = 412
    code = "precondition_failed"


class Overloaded(PromptcastError):
    status = 503
    code = "overloaded"


class StoreUnavailable(PromptcastError):
    status = 503
    code = "store_unavailable"


class StoreFull(PromptcastError):
    status = 503
    code = "store_full"


class DatabaseUnavailable(PromptcastError):
    status = 503
    code = "database_unavailable"


class StreamTooLarge(PromptcastError):
    status = 413
    code = "stream_too_large"


class StreamStopped(PromptcastError):
    """A resumable stream stopped before its end: `cancelled` by DELETE, or `abandoned`."""

    status = 409
    code = "cancelled"

    def __init__(self, message: str, *, code: str = "cancelled") -> None:
        super().__init__(message)
        self._code = code

    @property
    def error_code(self) -> str:
        return self._code


class ProducerLost(PromptcastError):
    status = 502
    code = "producer_lost"


class ClientGone(PromptcastError):
    status = 499
    code = "client_closed"


class StreamTimeout(PromptcastError):
    status = 504
    code = "timeout"
    sse_event = "timeout"


class SSEProtocolError(PromptcastError):
    """The bytes are not an event stream we can read (a line over the cap, say)."""

    status = 502
    code = "bad_upstream_stream"


class UpstreamError(PromptcastError):
    """The upstream failed; `upstream_status` picks our status and code."""

    status = 502
    code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        upstream_status: int | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, headers=headers)
        self.upstream_status = upstream_status
        self._code = code

    @property
    def error_code(self) -> str:
        if self._code is not None:
            return self._code
        return _UPSTREAM_CODES.get(self.upstream_status or 0, self.code)

    @property
    def http_status(self) -> int:
        return _UPSTREAM_STATUSES.get(self.upstream_status or 0, self.status)


# A client can act on a rate limit or an outage; an upstream auth failure is
# our misconfiguration, not the client's, so it stays a 502.
_UPSTREAM_STATUSES = {429: 429, 503: 503}
_UPSTREAM_CODES = {
    401: "upstream_unauthorized",
    403: "upstream_forbidden",
    404: "upstream_not_found",
    429: "upstream_rate_limited",
    503: "upstream_unavailable",
}


def error_payload(exc: PromptcastError) -> dict[str, str]:
    """The `data` of the SSE frame that ends a stream with `exc`."""
    return {"code": exc.error_code, "message": exc.message}
