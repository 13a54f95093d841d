"""Typed results of the stq API, as dataclasses.

Each result class has a ``from_dict`` class method that reads the decoded
JSON object. Times become timezone-aware :class:`datetime.datetime`,
durations :class:`datetime.timedelta`. Members this version of the client
does not know (the API may add members within a version) are kept in each
object's ``extra`` dict. A member that is ``null`` on the wire keeps the
field's default (None, "", 0, False or an empty list).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Dict, FrozenSet, List, Mapping, Optional, Sequence, Union

from .convert import DurationLike, TimeLike, format_duration, format_time, parse_duration, parse_time

__all__ = [
    "QUEUED", "RUNNING", "DONE", "FAILED", "CANCELLED", "SUPERSEDED", "EXPIRED",
    "STATES", "TERMINAL_STATES",
    "Attempt", "Job", "LogLine", "LogPage", "Event", "EnqueueResult", "EnqueueRequest",
    "WaitResult", "ListPage", "PowerState", "RetentionStats", "Stats", "RecoveredJob",
    "RecoverReport",
]

# Job states (docs/API.md, "Data types"). Plain strings: a newer daemon may
# add states.
QUEUED = "QUEUED"
RUNNING = "RUNNING"
DONE = "DONE"
FAILED = "FAILED"
CANCELLED = "CANCELLED"
SUPERSEDED = "SUPERSEDED"
EXPIRED = "EXPIRED"
STATES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED, SUPERSEDED, EXPIRED)
TERMINAL_STATES: FrozenSet[str] = frozenset((DONE, FAILED, CANCELLED, SUPERSEDED, EXPIRED))

_Conv = Callable[[Any], Any]


def _decode(cls: Any, obj: Any, conv: Mapping[str, _Conv]) -> Any:
    """Build dataclass cls from a JSON object: known members through their
    converter, null members left at their default, unknown ones into
    extra."""
    if not isinstance(obj, dict):
        raise TypeError("%s: expected a JSON object, got %s" % (cls.__name__, type(obj).__name__))
    names = _field_names(cls)
    kw: Dict[str, Any] = {}
    extra: Dict[str, Any] = {}
    for key, value in obj.items():
        if key not in names:
            extra[key] = value
            continue
        if value is None:
            continue
        c = conv.get(key)
        kw[key] = c(value) if c is not None else value
    return cls(extra=extra, **kw)


_NAMES: Dict[type, FrozenSet[str]] = {}


def _field_names(cls: type) -> FrozenSet[str]:
    names = _NAMES.get(cls)
    if names is None:
        names = frozenset(f.name for f in dataclasses.fields(cls) if f.name != "extra")
        _NAMES[cls] = names
    return names


def _list_of(conv: _Conv) -> _Conv:
    return lambda v: [conv(x) for x in v]


@dataclass
class Attempt:
    """One run of a job."""

    n: int = 0
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
    #: "running", "succeeded", "failed", "cancelled", "superseded",
    #: "interrupted" or "crashed".
    outcome: str = ""
    reason: str = ""
    exit_code: Optional[int] = None
    #: 0 before the process started, or for in-process handlers.
    pid: int = 0
    #: process start time in milliseconds since the epoch; 0 when unknown.
    pid_start: int = 0
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, obj: Any) -> "Attempt":
        return _decode(cls, obj, _ATTEMPT_CONV)


_ATTEMPT_CONV: Dict[str, _Conv] = {"started_at": parse_time, "finished_at": parse_time}


@dataclass
class Job:
    """A job, as the daemon returns it (docs/API.md, "Job object").

    ``command`` and ``env`` are None when the job has none; ``after`` and
    ``attempts`` are empty lists when there are none (dev.list.v1 leaves the
    attempt history out, so there ``attempts`` is empty). A job in a
    ``logs.event`` of a superseded job may carry only id, queue, type,
    subject and state; the other fields then keep their defaults."""

    id: str = ""
    queue: str = ""
    type: str = ""
    subject: str = ""
    generation: int = 0
    priority: int = 0
    state: str = ""
    attempt: int = 0
    max_attempts: int = 0
    #: the payload given at enqueue, decoded from JSON (None when unset).
    payload: Any = None
    command: Optional[List[str]] = None
    cwd: str = ""
    env: Optional[Dict[str, str]] = None
    run_at: Optional[datetime] = None
    deadline: timedelta = timedelta(0)
    ttl: timedelta = timedelta(0)
    backoff: timedelta = timedelta(0)
    created_at: Optional[datetime] = None
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
    exit_code: Optional[int] = None
    error: str = ""
    wait_idle: bool = False
    require_charging: bool = False
    debounce: timedelta = timedelta(0)
    replace: bool = False
    after: List[str] = field(default_factory=list)
    #: why a QUEUED job is not running yet ("run_at", "queue paused", ...).
    waiting: str = ""
    owner: str = ""
    attempts: List[Attempt] = field(default_factory=list)
    log_truncated: bool = False
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        """Whether the job is in a terminal state (DONE, FAILED, ...)."""
        return self.state in TERMINAL_STATES

    @classmethod
    def from_dict(cls, obj: Any) -> "Job":
        return _decode(cls, obj, _JOB_CONV)


_JOB_CONV: Dict[str, _Conv] = {
    "run_at": parse_time,
    "created_at": parse_time,
    "started_at": parse_time,
    "finished_at": parse_time,
    "deadline": parse_duration,
    "ttl": parse_duration,
    "backoff": parse_duration,
    "debounce": parse_duration,
    "attempts": _list_of(Attempt.from_dict),
    "command": list,
    "after": list,
}


@dataclass
class LogLine:
    """One line of a job's output."""

    #: increases within a job's log; resume a tail with ``after_seq=seq``.
    seq: int = 0
    time: Optional[datetime] = None
    attempt: int = 0
    #: "stdout", "stderr" or "stq" (the daemon's own notes).
    stream: str = ""
    text: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, obj: Any) -> "LogLine":
        return _decode(cls, obj, _LOGLINE_CONV)


_LOGLINE_CONV: Dict[str, _Conv] = {"time": parse_time}


@dataclass
class LogPage:
    """One page of a job's stored output (logs.tail.v1 without follow).
    When ``more`` is set, ask again from the last line's seq."""

    lines: List[LogLine] = field(default_factory=list)
    more: bool = False
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, obj: Any) -> "LogPage":
        return _decode(cls, obj, {"lines": _list_of(LogLine.from_dict)})


@dataclass
class Event:
    """What :meth:`stq.Client.tail` yields: a log line (``kind == "log"``,
    ``line`` set) or a job's change of state (``kind == "job"``, ``job``
    usually set). Other kinds may appear with newer daemons; skip them."""

    kind: str = ""
    job_id: str = ""
    line: Optional[LogLine] = None
    job: Optional[Job] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, obj: Any) -> "Event":
        return _decode(cls, obj, _EVENT_CONV)


_EVENT_CONV: Dict[str, _Conv] = {"line": LogLine.from_dict, "job": Job.from_dict}


@dataclass
class EnqueueResult:
    """The result of an enqueue: the job as stored (SUPERSEDED if its
    generation was already outdated) and the ids of the older queued jobs
    it superseded."""

    job: Job = field(default_factory=Job)
    superseded: List[str] = field(default_factory=list)
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, obj: Any) -> "EnqueueResult":
        return _decode(cls, obj, {"job": Job.from_dict, "superseded": list})


@dataclass
class Enqueued:
    """One job of :meth:`stq.Client.enqueue_many_brief`: its id, its state
    when stored (QUEUED, or SUPERSEDED if its generation was already
    outdated), its generation and the ids of the older queued jobs it
    superseded."""

    id: str = ""
    state: str = ""
    generation: int = 0
    superseded: List[str] = field(default_factory=list)
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, obj: Any) -> "Enqueued":
        return _decode(cls, obj, {"superseded": list})


@dataclass
class WaitResult:
    """The result of :meth:`stq.Client.wait`: the jobs in the order of the
    ids asked for; ``timed_out`` when the timeout passed while some were
    still live (the jobs are then as they were at that moment)."""

    jobs: List[Job] = field(default_factory=list)
    timed_out: bool = False
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, obj: Any) -> "WaitResult":
        return _decode(cls, obj, {"jobs": _list_of(Job.from_dict)})


@dataclass
class ListPage:
    """One page of dev.list.v1. ``next_cursor`` continues after it; empty
    when this page is the last."""

    jobs: List[Job] = field(default_factory=list)
    next_cursor: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, obj: Any) -> "ListPage":
        return _decode(cls, obj, {"jobs": _list_of(Job.from_dict)})


@dataclass
class PowerState:
    """Whether the machine is on AC power, as the daemon last measured."""

    on_ac: bool = False
    known: bool = False
    note: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, obj: Any) -> "PowerState":
        return _decode(cls, obj, {})


@dataclass
class RetentionStats:
    """The retention settings in force (zero: no limit)."""

    max_age: timedelta = timedelta(0)
    keep: int = 0
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, obj: Any) -> "RetentionStats":
        return _decode(cls, obj, {"max_age": parse_duration})


@dataclass
class Stats:
    """The daemon's state and job counts (admin.stats.v1)."""

    #: queue name -> state -> number of jobs (states with none may be absent).
    queues: Dict[str, Dict[str, int]] = field(default_factory=dict)
    #: size of the database on disk (0 if unknown).
    db_bytes: int = 0
    workers: int = 0
    running: int = 0
    #: "host/instance" of this daemon.
    owner: str = ""
    started: Optional[datetime] = None
    #: jobs found RUNNING from a dead daemon since this one started.
    recovered: int = 0
    paused: List[str] = field(default_factory=list)
    idle: bool = False
    power: PowerState = field(default_factory=PowerState)
    retention: RetentionStats = field(default_factory=RetentionStats)
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, obj: Any) -> "Stats":
        return _decode(cls, obj, _STATS_CONV)


_STATS_CONV: Dict[str, _Conv] = {
    "queues": lambda v: {q: dict(counts or {}) for q, counts in v.items()},
    "started": parse_time,
    "paused": list,
    "power": PowerState.from_dict,
    "retention": RetentionStats.from_dict,
}


@dataclass
class RecoveredJob:
    """One job a recovery scan dealt with."""

    id: str = ""
    pid: int = 0
    #: a leftover process was killed.
    killed: bool = False
    new_state: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, obj: Any) -> "RecoveredJob":
        return _decode(cls, obj, {})


@dataclass
class RecoverReport:
    """What a recovery scan did (admin.recover.v1)."""

    #: RUNNING jobs examined.
    scanned: int = 0
    recovered: List[RecoveredJob] = field(default_factory=list)
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, obj: Any) -> "RecoverReport":
        return _decode(cls, obj, {"recovered": _list_of(RecoveredJob.from_dict)})


# Enqueue requests.

_DURATION_MEMBERS = ("delay", "deadline", "ttl", "backoff", "debounce")
_TIME_MEMBERS = ("run_at",)
_LIST_MEMBERS = ("command", "after")


@dataclass
class EnqueueRequest:
    """The params of one enqueue (dev.enqueue.v1; docs/API.md). Fields left
    None are not sent, so the daemon applies its defaults.

    Durations (delay, deadline, ttl, backoff, debounce) take a timedelta, a
    number of seconds or a Go duration string; ``run_at`` a datetime (naive
    means local time) or an RFC 3339 string; ``payload`` any JSON-able
    value."""

    queue: Optional[str] = None
    type: Optional[str] = None
    subject: Optional[str] = None
    generation: Optional[int] = None
    priority: Optional[int] = None
    payload: Any = None
    command: Optional[Sequence[str]] = None
    cwd: Optional[str] = None
    env: Optional[Mapping[str, str]] = None
    run_at: Optional[TimeLike] = None
    delay: Optional[DurationLike] = None
    deadline: Optional[DurationLike] = None
    ttl: Optional[DurationLike] = None
    backoff: Optional[DurationLike] = None
    debounce: Optional[DurationLike] = None
    max_attempts: Optional[int] = None
    wait_idle: Optional[bool] = None
    require_charging: Optional[bool] = None
    replace: Optional[bool] = None
    after: Optional[Sequence[str]] = None

    def to_wire(self) -> Dict[str, Any]:
        """The JSON params object for this request."""
        return request_to_wire({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})


def request_to_wire(req: Union[EnqueueRequest, Mapping[str, Any]]) -> Dict[str, Any]:
    """Turn an :class:`EnqueueRequest` or a dict of its members into the
    wire params: None members dropped, durations and times converted.
    Members this client does not know are passed through for the daemon to
    judge (it refuses unknown members)."""
    if isinstance(req, EnqueueRequest):
        return req.to_wire()
    if not isinstance(req, Mapping):
        raise TypeError("an enqueue request must be an EnqueueRequest or a dict, not %s" % type(req).__name__)
    out: Dict[str, Any] = {}
    for key, value in req.items():
        if value is None:
            continue
        if key in _DURATION_MEMBERS:
            value = format_duration(value)
        elif key in _TIME_MEMBERS:
            value = format_time(value)
        elif key in _LIST_MEMBERS:
            if isinstance(value, (str, bytes)):
                raise TypeError("%s must be a list of strings, not a single string" % key)
            value = list(value)
        elif key == "env":
            value = dict(value)
        out[key] = value
    return out
