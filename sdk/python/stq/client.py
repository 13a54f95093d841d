"""The stq client: line-delimited JSON-RPC 2.0 over the daemon's Unix
socket (docs/API.md)."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Union

from .convert import DurationLike, TimeLike, format_duration, parse_duration
from .errors import (
    UNAUTHORIZED,
    UNAVAILABLE,
    ConnectionLost,
    NoDaemon,
    StqError,
    error_from_wire,
)
from .paths import MAX_SOCKET_PATH, _locate
from .types import (
    Enqueued,
    EnqueueRequest,
    EnqueueResult,
    Event,
    Job,
    ListPage,
    LogPage,
    RecoverReport,
    Stats,
    WaitResult,
    request_to_wire,
)

__all__ = ["Client"]

# Method names (Go: ipc/protocol.go).
M_AUTH = "auth.v1"
M_ENQUEUE = "dev.enqueue.v1"
M_ENQUEUE_MANY = "dev.enqueue_many.v1"
M_CANCEL = "dev.cancel.v1"
M_GET = "dev.get.v1"
M_LIST = "dev.list.v1"
M_WAIT = "dev.wait.v1"
M_TAIL = "logs.tail.v1"
M_STATS = "admin.stats.v1"
M_RECOVER = "admin.recover.v1"
M_PAUSE = "admin.pause.v1"
M_RESUME = "admin.resume.v1"
M_RETRY = "dev.retry.v1"
NOTIFY_LOGS_EVENT = "logs.event"

_NO_DAEMON_HINT = "start one with `stq daemon`"

# Marks "use the client's own timeout" in _call.
_DEFAULT = object()


def _no_daemon(socket_path: str) -> NoDaemon:
    return NoDaemon("no daemon at %s: %s" % (socket_path, _NO_DAEMON_HINT), socket_path=socket_path)


class _Conn:
    """One connection to the daemon. Not thread-safe: Client serialises
    its use. Any exception from send or read leaves it unusable."""

    def __init__(self, socket_path: str, connect_timeout: Optional[float]) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(connect_timeout)
            sock.connect(socket_path)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            sock.close()
            raise _no_daemon(socket_path) from e
        except socket.timeout as e:
            sock.close()
            raise ConnectionLost("connect to daemon at %s: timed out" % socket_path) from e
        except OSError as e:
            sock.close()
            raise StqError("connect to daemon at %s: %s" % (socket_path, e)) from e
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        # A buffered reader's readline has no length bound: responses (a
        # list of many jobs with payloads) can be many megabytes on one line.
        self.rfile = sock.makefile("rb")
        self.next_id = 0
        self.version = ""
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            # Wakes a read blocked in another thread, and really ends the
            # connection even while the file object holds the socket.
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.rfile.close()
        except OSError:
            pass
        self.sock.close()

    def send(self, method: str, params_json: Optional[str], timeout: Optional[float]) -> int:
        """Write one request whose params are already encoded; return its
        id."""
        self.next_id += 1
        rid = self.next_id
        line = '{"jsonrpc":"2.0","id":%d,"method":%s' % (rid, json.dumps(method))
        if params_json is not None:
            line += ',"params":' + params_json
        line += "}\n"
        try:
            self.sock.settimeout(timeout)
            self.sock.sendall(line.encode("utf-8"))
        except OSError as e:
            # A server that refused the connection (a limit, the peer's uid)
            # wrote why before closing; that beats "broken pipe".
            reason = self._read_refusal()
            if reason is not None:
                raise reason from e
            raise ConnectionLost("%s: %s" % (method, e)) from e
        return rid

    def _read_refusal(self) -> Optional[StqError]:
        try:
            self.sock.settimeout(1.0)
            msg = self.read(self.sock.gettimeout(), "connect")
        except (StqError, OSError):
            return None
        if msg.get("id") is None and isinstance(msg.get("error"), dict):
            return error_from_wire(msg["error"])
        return None

    def read(self, timeout: Optional[float], method: str) -> Dict[str, Any]:
        """Read the next message (response or notification)."""
        try:
            self.sock.settimeout(timeout)
            while True:
                line = self.rfile.readline()
                if not line:
                    raise ConnectionLost("%s: the daemon closed the connection" % method)
                if line.strip():
                    break
        except socket.timeout as e:
            raise ConnectionLost("%s: timed out waiting for the daemon" % method) from e
        except OSError as e:
            raise ConnectionLost("%s: %s" % (method, e)) from e
        except ValueError as e:  # the file was closed by another thread
            raise ConnectionLost("%s: connection closed" % method) from e
        try:
            msg = json.loads(line)
        except ValueError as e:
            raise ConnectionLost("%s: malformed message from daemon: %s" % (method, e)) from e
        if not isinstance(msg, dict):
            raise ConnectionLost("%s: malformed message from daemon: not an object" % method)
        return msg

    def call(self, method: str, params_json: Optional[str], timeout: Optional[float]) -> Dict[str, Any]:
        """Send a request and read up to its response, which is returned
        whole (with "result" or "error"). An error with a null id (the
        server refusing the whole connection) is returned as well.
        Notifications and responses to other ids are skipped."""
        rid = self.send(method, params_json, timeout)
        while True:
            msg = self.read(timeout, method)
            mid = msg.get("id")
            if mid is None:
                if msg.get("error") is not None:
                    return msg
                continue  # a notification (none is expected here)
            if mid == rid and not isinstance(mid, bool):
                return msg


def _encode_params(params: Any) -> Optional[str]:
    if params is None:
        return None
    # ASCII output: always valid UTF-8, even for strings with lone
    # surrogates. NaN and infinity are not JSON.
    return json.dumps(params, separators=(",", ":"), allow_nan=False)


def _seconds(d: DurationLike) -> float:
    if isinstance(d, str):
        return parse_duration(d).total_seconds()
    if hasattr(d, "total_seconds"):
        return d.total_seconds()  # type: ignore[union-attr]
    return float(d)


def _str_list(name: str, v: Union[str, Iterable[str]]) -> List[str]:
    if isinstance(v, str):
        return [v]
    if isinstance(v, bytes):
        raise TypeError("%s must be strings, not bytes" % name)
    return list(v)


class Client:
    """A client of the stq daemon.

    ``Client()`` finds the daemon as the ``stq`` command does (``$STQ_HOME``,
    else the default state directory; see :func:`stq.locate`);
    ``Client(home=...)`` uses that home. ``socket_path`` and ``token`` set
    the socket and token explicitly (advanced use; whichever is not given
    still comes from the home).

    Connection: nothing happens in the constructor. The connection is
    opened, and authenticated with ``auth.v1``, on the first call (or by
    :meth:`connect`); the token file is read then. A missing token file or
    a socket nothing listens on raises :class:`stq.NoDaemon`. After an error
    that breaks the connection (:class:`stq.ConnectionLost`,
    :class:`stq.Unauthorized`, :class:`stq.Unavailable`) the next call opens
    a new one; calls are never retried by the client.

    ``timeout`` (seconds, default None: no limit) bounds the wait for each
    response; :meth:`wait` adds its own timeout to it, and a following
    :meth:`tail` is not bounded. A call that times out raises
    :class:`stq.ConnectionLost`. ``connect_timeout`` bounds connecting and
    authenticating.

    Thread safety: a Client is safe to share between threads. Calls are
    serialised by a lock, one request on the connection at a time, so a
    long :meth:`wait` holds up the other threads' calls on the same client:
    use one client per thread that waits. A following :meth:`tail` runs on
    a connection of its own and does not hold the lock.

    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        home: Optional[str] = None,
        *,
        socket_path: Optional[str] = None,
        token: Optional[str] = None,
        timeout: Optional[float] = None,
        connect_timeout: Optional[float] = 10.0,
    ) -> None:
        self.home: Optional[str] = None
        self.token_path: Optional[str] = None
        if socket_path is None or token is None:
            paths = _locate(home, os.environ, sys.platform, check_length=socket_path is None)
            self.home = paths.home
            if socket_path is None:
                socket_path = paths.socket
            if token is None:
                self.token_path = paths.token
        elif home:
            self.home = os.path.abspath(home)
        self.socket_path: str = os.fsdecode(socket_path)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._token = token.strip() if token is not None else None
        self._lock = threading.Lock()
        self._conn: Optional[_Conn] = None

    def __repr__(self) -> str:
        return "Client(socket_path=%r)" % (self.socket_path,)

    # connection management

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection. The client can still be used: the next
        call opens a new connection."""
        conn = self._conn
        if conn is not None:
            # Not under the lock: closing must interrupt a call blocked in
            # another thread (it then raises ConnectionLost).
            conn.close()
        with self._lock:
            if self._conn is conn:
                self._conn = None

    def connect(self) -> None:
        """Connect and authenticate now rather than on the first call, so
        that :class:`stq.NoDaemon` or :class:`stq.Unauthorized` shows at
        once."""
        with self._lock:
            self._ensure_conn()

    @property
    def server_version(self) -> str:
        """The daemon's version string from ``auth.v1``; "" before the
        first call."""
        conn = self._conn
        return conn.version if conn is not None else ""

    def _read_token(self) -> str:
        if self._token is not None:
            return self._token
        assert self.token_path is not None
        try:
            with open(self.token_path, "r", encoding="utf-8") as f:
                return f.read().strip()
        except FileNotFoundError as e:
            raise _no_daemon(self.socket_path) from e
        except OSError as e:
            raise StqError("read token: %s" % e) from e

    def _open(self) -> _Conn:
        """A new authenticated connection."""
        token = self._read_token()
        if len(os.fsencode(self.socket_path)) > MAX_SOCKET_PATH:
            raise StqError("socket path too long: %s is longer than a Unix socket path may be (%d bytes)"
                           % (self.socket_path, MAX_SOCKET_PATH))
        conn = _Conn(self.socket_path, self.connect_timeout)
        try:
            msg = conn.call(M_AUTH, _encode_params({"token": token}), self.connect_timeout)
        except BaseException:
            conn.close()
            raise
        err = msg.get("error")
        if err is not None:
            conn.close()
            e = error_from_wire(err)
            e.message = "authenticate to daemon at %s: %s" % (self.socket_path, e.message)
            raise e
        result = msg.get("result")
        if isinstance(result, dict) and isinstance(result.get("version"), str):
            conn.version = result["version"]
        return conn

    def _ensure_conn(self) -> _Conn:
        conn = self._conn
        if conn is None or conn.closed:
            self._conn = None
            conn = self._conn = self._open()
        return conn

    def call(self, method: str, params: Optional[Mapping[str, Any]] = None) -> Any:
        """Send one request and return its decoded JSON result. An escape
        hatch for methods or params this client has no wrapper for; error
        responses raise as for the typed methods."""
        return self._call(method, dict(params) if params is not None else None)

    def _call(self, method: str, params: Optional[Dict[str, Any]], timeout: Any = _DEFAULT) -> Any:
        params_json = _encode_params(params)  # bad params raise before any I/O
        if timeout is _DEFAULT:
            timeout = self.timeout
        with self._lock:
            conn = self._ensure_conn()
            try:
                msg = conn.call(method, params_json, timeout)
            except BaseException:
                # Whatever broke the call (even KeyboardInterrupt) left the
                # stream in an unknown state.
                self._drop(conn)
                raise
            err = msg.get("error")
            if err is None:
                return msg.get("result")
            e = error_from_wire(err)
            if msg.get("id") is None or e.code in (UNAUTHORIZED, UNAVAILABLE):
                # The server closes the connection after these.
                self._drop(conn)
            raise e

    def _drop(self, conn: _Conn) -> None:
        conn.close()
        if self._conn is conn:
            self._conn = None

    # methods

    def enqueue(
        self,
        *,
        queue: Optional[str] = None,
        type: Optional[str] = None,
        subject: Optional[str] = None,
        generation: Optional[int] = None,
        priority: Optional[int] = None,
        payload: Any = None,
        command: Optional[Sequence[str]] = None,
        cwd: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        run_at: Optional[TimeLike] = None,
        delay: Optional[DurationLike] = None,
        deadline: Optional[DurationLike] = None,
        ttl: Optional[DurationLike] = None,
        backoff: Optional[DurationLike] = None,
        debounce: Optional[DurationLike] = None,
        max_attempts: Optional[int] = None,
        wait_idle: Optional[bool] = None,
        require_charging: Optional[bool] = None,
        replace: Optional[bool] = None,
        after: Optional[Sequence[str]] = None,
    ) -> EnqueueResult:
        """Add a job (dev.enqueue.v1). It is stored durably when this
        returns. Arguments left None take the daemon's defaults; see
        :class:`stq.EnqueueRequest` for their forms. A job with a
        ``subject`` supersedes the queued jobs of the same queue, type and
        subject: their ids are in the result's ``superseded``."""
        req = EnqueueRequest(
            queue=queue, type=type, subject=subject, generation=generation, priority=priority,
            payload=payload, command=command, cwd=cwd, env=env, run_at=run_at, delay=delay,
            deadline=deadline, ttl=ttl, backoff=backoff, debounce=debounce,
            max_attempts=max_attempts, wait_idle=wait_idle, require_charging=require_charging,
            replace=replace, after=after,
        )
        return EnqueueResult.from_dict(self._call(M_ENQUEUE, req.to_wire()))

    def enqueue_many(self, requests: Iterable[Union[EnqueueRequest, Mapping[str, Any]]]) -> List[EnqueueResult]:
        """Add many jobs all or nothing, in one commit and in order
        (dev.enqueue_many.v1). Each request is an :class:`stq.EnqueueRequest`
        or a dict of the same members. If the daemon refuses one, nothing
        is stored and :class:`stq.InvalidRequest` is raised with ``index``
        set to the refused entry's position."""
        jobs = [request_to_wire(r) for r in requests]
        result = self._call(M_ENQUEUE_MANY, {"jobs": jobs})
        return [EnqueueResult.from_dict(r) for r in (result or {}).get("results") or []]

    def enqueue_many_brief(self, requests: Iterable[Union[EnqueueRequest, Mapping[str, Any]]]) -> List[Enqueued]:
        """:meth:`enqueue_many` answered briefly (``"reply": "brief"``):
        each job's id, state and generation instead of the whole job. For
        loading thousands of jobs, most of a call's time otherwise goes on
        encoding and decoding the jobs it sent."""
        jobs = [request_to_wire(r) for r in requests]
        result = self._call(M_ENQUEUE_MANY, {"jobs": jobs, "reply": "brief"})
        return [Enqueued.from_dict(r) for r in (result or {}).get("results") or []]

    def cancel(
        self,
        id: Optional[str] = None,
        subject: Optional[str] = None,
        queue: Optional[str] = None,
        type: Optional[str] = None,
    ) -> List[Job]:
        """Cancel one job by id, or every QUEUED or RUNNING job of a subject
        key (``subject`` with ``queue`` and ``type``, which default to
        "default" and "exec"). Returns the jobs cancelled. Raises
        :class:`stq.Conflict` for a job that already finished."""
        params = {k: v for k, v in (("id", id), ("subject", subject), ("queue", queue), ("type", type))
                  if v is not None}
        result = self._call(M_CANCEL, params)
        return [Job.from_dict(j) for j in (result or {}).get("jobs") or []]

    def get(self, id: str) -> Job:
        """Read one job with its attempt history. Raises
        :class:`stq.NotFound` for an unknown id."""
        return Job.from_dict(self._call(M_GET, {"id": id}))

    def list_page(
        self,
        states: Optional[Union[str, Iterable[str]]] = None,
        queue: Optional[str] = None,
        type: Optional[str] = None,
        subject: Optional[str] = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
    ) -> ListPage:
        """One page of dev.list.v1, newest first, without attempt history.
        Pass the page's ``next_cursor`` as ``cursor`` for the next one."""
        params: Dict[str, Any] = {}
        if states is not None:
            params["states"] = _str_list("states", states)
        for k, v in (("queue", queue), ("type", type), ("subject", subject), ("limit", limit), ("cursor", cursor)):
            if v is not None and v != "":
                params[k] = v
        return ListPage.from_dict(self._call(M_LIST, params))

    def list(
        self,
        states: Optional[Union[str, Iterable[str]]] = None,
        queue: Optional[str] = None,
        type: Optional[str] = None,
        subject: Optional[str] = None,
        page_size: int = 100,
    ) -> Iterator[Job]:
        """Every job matching the filters, newest first (without attempt
        history). ``states`` matches any of the given states, in any case;
        the other filters are exact matches.

        The result is an iterator that fetches ``page_size`` jobs at a time
        with the keyset cursor, so memory stays bounded by one page. The
        first page is fetched at once (bad filters raise here); later pages
        as the iteration reaches them."""
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise ValueError("page_size must be a positive integer, got %r" % (page_size,))
        if states is not None:
            states = _str_list("states", states)
        first = self.list_page(states, queue, type, subject, page_size)
        return self._list_rest(first, states, queue, type, subject, page_size)

    def _list_rest(self, page: ListPage, states: Any, queue: Any, type: Any, subject: Any,
                   page_size: int) -> Iterator[Job]:
        while True:
            for job in page.jobs:
                yield job
            if not page.next_cursor:
                return
            page = self.list_page(states, queue, type, subject, page_size, page.next_cursor)

    def wait(self, ids: Union[str, Iterable[str]], timeout: Optional[DurationLike] = None) -> WaitResult:
        """Block until every job in ``ids`` (one id or several) has ended,
        or ``timeout`` passes (a timedelta, seconds, or a duration string;
        None: no limit). On timeout the result has ``timed_out`` set and the
        jobs as they are; a timeout of 0 polls. Raises
        :class:`stq.NotFound` for an unknown id.

        The client's lock is held meanwhile: other threads' calls on this
        client wait for it."""
        params: Dict[str, Any] = {"ids": _str_list("ids", ids)}
        read_timeout: Optional[float] = None
        if timeout is not None:
            params["timeout"] = format_duration(timeout)
            if self.timeout is not None:
                read_timeout = self.timeout + _seconds(timeout)
        return WaitResult.from_dict(self._call(M_WAIT, params, timeout=read_timeout))

    def logs(self, job_id: str, after_seq: int = 0) -> LogPage:
        """One page (at most 10000 lines) of a job's stored output after
        ``after_seq``. If ``more`` is set, ask again from the last line's
        seq; :meth:`tail` does that for you."""
        params: Dict[str, Any] = {"job_id": job_id}
        if after_seq:
            params["after_seq"] = after_seq
        return LogPage.from_dict(self._call(M_TAIL, params))

    def tail(
        self,
        job_id: Optional[str] = None,
        follow: bool = False,
        after_seq: int = 0,
        queue: Optional[str] = None,
    ) -> Iterator[Event]:
        """A job's output as :class:`stq.Event` objects.

        Without ``follow``: the stored lines after ``after_seq`` (each an
        event of kind "log" with ``line`` set), all pages of them; the first
        page is fetched at once, so an unknown job raises
        :class:`stq.NotFound` here.

        With ``follow`` and a ``job_id``: a generator yielding the stored
        lines, then live lines and the job's state changes (kind "job",
        ``job`` set) as they happen; it ends after the event of the job's
        terminal state, which is always the last one. With ``follow`` and no
        ``job_id``: every job's events (or ``queue``'s) until you stop.

        A follow runs on a connection of its own, opened when the generator
        first runs (errors such as :class:`stq.NotFound` show on the first
        ``next()``); the client stays usable meanwhile. Stopping early is
        safe: ``break`` out of the loop, or call the generator's ``close()``,
        and the side connection is closed."""
        if follow:
            return self._follow(job_id, queue, after_seq)
        if queue is not None:
            raise ValueError("queue is only meaningful with follow=True")
        if job_id is None:
            raise ValueError("job_id is required unless follow is true")
        first = self.logs(job_id, after_seq)
        return self._tail_stored(job_id, first)

    def _tail_stored(self, job_id: str, page: LogPage) -> Iterator[Event]:
        while True:
            for line in page.lines:
                yield Event(kind="log", job_id=job_id, line=line)
            if not page.more or not page.lines:
                return
            page = self.logs(job_id, page.lines[-1].seq)

    def _follow(self, job_id: Optional[str], queue: Optional[str], after_seq: int) -> Iterator[Event]:
        params: Dict[str, Any] = {"follow": True}
        if job_id is not None:
            params["job_id"] = job_id
        if queue is not None:
            params["queue"] = queue
        if after_seq:
            params["after_seq"] = after_seq
        params_json = _encode_params(params)
        conn = self._open()
        try:
            rid = conn.send(M_TAIL, params_json, None)
            ended = False
            while True:
                msg = conn.read(None, M_TAIL)
                mid = msg.get("id")
                if mid is None:
                    if msg.get("error") is not None:
                        raise error_from_wire(msg["error"])
                    if msg.get("method") != NOTIFY_LOGS_EVENT or not isinstance(msg.get("params"), dict):
                        continue  # a notification this client does not know
                    ev = Event.from_dict(msg["params"])
                    if (ev.kind == "job" and job_id is not None and ev.job_id == job_id
                            and ev.job is not None and ev.job.terminal):
                        ended = True
                    yield ev
                    continue
                if mid != rid:
                    continue
                if msg.get("error") is not None:
                    raise error_from_wire(msg["error"])
                result = msg.get("result")
                if isinstance(result, dict) and isinstance(result.get("job"), dict) and not ended:
                    # A job that had ended before the follow began (or
                    # whose terminal event carried no job) sends no such
                    # event: the final response stands in for it.
                    job = Job.from_dict(result["job"])
                    yield Event(kind="job", job_id=job.id, job=job)
                return
        finally:
            conn.close()

    def stats(self) -> Stats:
        """The daemon's state and job counts."""
        return Stats.from_dict(self._call(M_STATS, None))

    def recover(self) -> RecoverReport:
        """Run a recovery scan now: jobs RUNNING under a dead daemon of this
        host get their attempt ended as crashed."""
        return RecoverReport.from_dict(self._call(M_RECOVER, None))

    def pause(self, queue: str) -> None:
        """Stop a queue from starting jobs; running ones finish. The pause
        survives daemon restarts."""
        self._call(M_PAUSE, {"queue": queue})

    def resume(self, queue: str) -> None:
        """Let a paused queue start jobs again."""
        self._call(M_RESUME, {"queue": queue})

    def retry(self, id: str) -> Job:
        """Re-queue a FAILED, CANCELLED or EXPIRED job as a new attempt
        series; returns the job. Another state raises
        :class:`stq.InvalidRequest`."""
        return Job.from_dict(self._call(M_RETRY, {"id": id}))
