"""Exceptions raised by the stq client.

Every exception is a :class:`StqError`. Those that come from an error
response of the daemon carry its JSON-RPC ``code``, ``message`` and ``data``;
the others (:class:`NoDaemon`, :class:`ConnectionLost`) have ``code`` None.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Type

__all__ = [
    "StqError",
    "NoDaemon",
    "ConnectionLost",
    "Unauthorized",
    "NotFound",
    "InvalidRequest",
    "MethodNotFound",
    "Conflict",
    "Unavailable",
    "LimitExceeded",
    "RateLimited",
    "InternalError",
    "error_from_wire",
    "PARSE_ERROR",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "INVALID_PARAMS",
    "INTERNAL_ERROR",
    "UNAUTHORIZED",
    "NOT_FOUND",
    "CONFLICT",
    "UNAVAILABLE",
    "LIMIT_EXCEEDED",
    "RATE_LIMITED",
]

# JSON-RPC error codes of the stq wire contract (docs/API.md, "Errors").
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
UNAUTHORIZED = -32000
NOT_FOUND = -32001
CONFLICT = -32003
UNAVAILABLE = -32004
LIMIT_EXCEEDED = -32005
RATE_LIMITED = -32006


class StqError(Exception):
    """Base class of every error the client raises.

    ``code`` is the JSON-RPC error code (None when the error did not come
    from the daemon), ``message`` the human-readable text and ``data`` the
    error's ``data`` member (any JSON value, or None).
    """

    def __init__(self, message: str, code: Optional[int] = None, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.data = data

    def __str__(self) -> str:
        if self.code is None:
            return self.message
        return "%s (code %d)" % (self.message, self.code)

    def __repr__(self) -> str:
        return "%s(%r, code=%r, data=%r)" % (type(self).__name__, self.message, self.code, self.data)

    def __reduce__(self):  # keep code and data through pickling
        return (type(self), (self.message, self.code, self.data))


class NoDaemon(StqError):
    """No daemon could be reached: its token file is missing, or nothing
    listens on its socket. ``socket_path`` is the socket that was tried."""

    def __init__(self, message: str, code: Optional[int] = None, data: Any = None,
                 socket_path: Optional[str] = None) -> None:
        super().__init__(message, code, data)
        self.socket_path = socket_path

    def __reduce__(self):
        return (type(self), (self.message, self.code, self.data, self.socket_path))


class ConnectionLost(StqError):
    """The connection broke during a call (the daemon went away, a read
    timed out, or it sent something unreadable). Whether the request took
    effect is unknown. The client opens a new connection on its next call."""


class Unauthorized(StqError):
    """-32000: the token (or the peer's uid) was refused. The daemon closes
    the connection."""


class NotFound(StqError):
    """-32001: no job has that id."""


class InvalidRequest(StqError):
    """-32602 (invalid params) or -32600 (invalid request): the daemon
    refused the request and changed nothing.

    For a refused :meth:`stq.Client.enqueue_many`, ``index`` is the position
    of the entry that was refused (None otherwise)."""

    def __init__(self, message: str, code: Optional[int] = None, data: Any = None) -> None:
        super().__init__(message, code, data)
        self.index: Optional[int] = None
        if isinstance(data, dict):
            idx = data.get("index")
            if isinstance(idx, int) and not isinstance(idx, bool):
                self.index = idx


class MethodNotFound(StqError):
    """-32601: the daemon does not know the method (an older daemon)."""


class Conflict(StqError):
    """-32003: the job already finished (e.g. cancelling a DONE job)."""


class Unavailable(StqError):
    """-32004: the daemon is shutting down."""


class LimitExceeded(StqError):
    """-32005: a size, count or in-flight bound was hit, or a following tail
    fell behind."""


class RateLimited(StqError):
    """-32006: over an enqueue rate limit; nothing was stored.

    ``retry_after`` is how long to wait before sending again, in seconds
    (from ``data.retry_after_ms``; 0.0 if the daemon did not say)."""

    def __init__(self, message: str, code: Optional[int] = None, data: Any = None) -> None:
        super().__init__(message, code, data)
        self.retry_after = 0.0
        if isinstance(data, dict):
            ms = data.get("retry_after_ms")
            if isinstance(ms, (int, float)) and not isinstance(ms, bool) and ms > 0:
                self.retry_after = ms / 1000.0


class InternalError(StqError):
    """-32603: an unexpected daemon failure (also a wait or tail cancelled
    because the connection was closing)."""


_BY_CODE: Dict[int, Type[StqError]] = {
    UNAUTHORIZED: Unauthorized,
    NOT_FOUND: NotFound,
    INVALID_PARAMS: InvalidRequest,
    INVALID_REQUEST: InvalidRequest,
    METHOD_NOT_FOUND: MethodNotFound,
    CONFLICT: Conflict,
    UNAVAILABLE: Unavailable,
    LIMIT_EXCEEDED: LimitExceeded,
    RATE_LIMITED: RateLimited,
    INTERNAL_ERROR: InternalError,
}


def error_from_wire(obj: Any) -> StqError:
    """Turn a JSON-RPC error object (``{"code", "message", "data"}``, as
    decoded from JSON) into the matching exception. Unknown codes give a
    plain :class:`StqError`, as the API asks clients to treat them like an
    internal error."""
    if not isinstance(obj, dict):
        return StqError("malformed error from daemon: %r" % (obj,))
    code = obj.get("code")
    if not isinstance(code, int) or isinstance(code, bool):
        code = None
    message = obj.get("message")
    if not isinstance(message, str):
        message = "error %s" % (code,)
    cls = _BY_CODE.get(code, StqError) if code is not None else StqError
    return cls(message, code, obj.get("data"))
