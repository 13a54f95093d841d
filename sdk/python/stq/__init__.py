"""Python client for stq, the local job-queue daemon.

Standard library only. Talks line-delimited JSON-RPC 2.0 to the daemon over
its Unix socket (docs/API.md in the stq repository)::

    import stq

    with stq.Client() as c:
        res = c.enqueue(command=["make", "test"], subject="src/main.go")
        job = c.wait(res.job.id).jobs[0]
        for ev in c.tail(job.id):
            print(ev.line.text)

A :class:`Client` is thread-safe: calls are serialised by a lock.
"""

from .client import Client
from .convert import format_duration, format_time, parse_duration, parse_time
from .errors import (
    Conflict,
    ConnectionLost,
    InternalError,
    InvalidRequest,
    LimitExceeded,
    MethodNotFound,
    NoDaemon,
    NotFound,
    RateLimited,
    StqError,
    Unauthorized,
    Unavailable,
    error_from_wire,
)
from .paths import Paths, locate
from .types import (
    CANCELLED,
    DONE,
    EXPIRED,
    FAILED,
    QUEUED,
    RUNNING,
    STATES,
    SUPERSEDED,
    TERMINAL_STATES,
    Attempt,
    EnqueueRequest,
    Enqueued,
    EnqueueResult,
    Event,
    Job,
    ListPage,
    LogLine,
    LogPage,
    PowerState,
    RecoveredJob,
    RecoverReport,
    RetentionStats,
    Stats,
    WaitResult,
)

__version__ = "0.1.0"

__all__ = [
    "Client",
    "locate",
    "Paths",
    # results
    "Job",
    "Attempt",
    "LogLine",
    "LogPage",
    "Event",
    "EnqueueRequest",
    "Enqueued",
    "EnqueueResult",
    "WaitResult",
    "ListPage",
    "Stats",
    "PowerState",
    "RetentionStats",
    "RecoverReport",
    "RecoveredJob",
    # states
    "QUEUED",
    "RUNNING",
    "DONE",
    "FAILED",
    "CANCELLED",
    "SUPERSEDED",
    "EXPIRED",
    "STATES",
    "TERMINAL_STATES",
    # errors
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
    # conversions
    "format_duration",
    "parse_duration",
    "format_time",
    "parse_time",
    "__version__",
]
