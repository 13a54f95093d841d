"""Tests of the stq Python client.

The integration tests run against a real daemon built from this
repository: setUpClass builds the binary once (``go build``, in the repo
root three levels up from this file; set STQ_TEST_BINARY to use a prebuilt
one instead) and starts ``stq daemon`` on a fresh home under /tmp.

Run: cd sdk/python && python3 -m unittest discover -s tests -v
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from datetime import datetime, timedelta, timezone
from pathlib import Path
from unittest import mock

HERE = Path(__file__).resolve()
SDK_DIR = HERE.parents[1]
REPO_ROOT = HERE.parents[3]
sys.path.insert(0, str(SDK_DIR))  # test the tree, not an installed copy

import stq  # noqa: E402
from stq.paths import _locate  # noqa: E402
from stq.types import request_to_wire  # noqa: E402

START_TIMEOUT = 10.0  # seconds for the daemon to come up
WAIT = 15  # seconds a test waits for a job before failing


def poll(cond, timeout=10.0, interval=0.02, what="condition"):
    """Call cond until it returns something true, at most timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


# ---------------------------------------------------------------------------
# Unit tests: no daemon needed.


class ErrorMappingTest(unittest.TestCase):
    def test_codes(self):
        cases = {
            -32000: stq.Unauthorized,
            -32001: stq.NotFound,
            -32003: stq.Conflict,
            -32004: stq.Unavailable,
            -32005: stq.LimitExceeded,
            -32006: stq.RateLimited,
            -32600: stq.InvalidRequest,
            -32602: stq.InvalidRequest,
            -32601: stq.MethodNotFound,
            -32603: stq.InternalError,
        }
        for code, cls in cases.items():
            e = stq.error_from_wire({"code": code, "message": "m%d" % code})
            self.assertIs(type(e), cls, code)
            self.assertIsInstance(e, stq.StqError)
            self.assertEqual(e.code, code)
            self.assertEqual(e.message, "m%d" % code)
            self.assertIsNone(e.data)
            self.assertIn(str(code), str(e))

    def test_unknown_code_is_base_error(self):
        e = stq.error_from_wire({"code": -32042, "message": "new", "data": [1]})
        self.assertIs(type(e), stq.StqError)
        self.assertEqual((e.code, e.message, e.data), (-32042, "new", [1]))
        e = stq.error_from_wire("garbage")
        self.assertIs(type(e), stq.StqError)
        self.assertIsNone(e.code)

    def test_rate_limited(self):
        fake = {"code": -32006, "message": "rate limited: too many enqueues; retry in 1500ms",
                "data": {"retry_after_ms": 1500}}
        e = stq.error_from_wire(fake)
        self.assertIsInstance(e, stq.RateLimited)
        self.assertEqual(e.retry_after, 1.5)
        self.assertEqual(e.data, {"retry_after_ms": 1500})
        self.assertEqual(stq.error_from_wire({"code": -32006, "message": "x"}).retry_after, 0.0)
        e2 = pickle.loads(pickle.dumps(e))
        self.assertIsInstance(e2, stq.RateLimited)
        self.assertEqual((e2.code, e2.retry_after), (-32006, 1.5))

    def test_batch_index(self):
        e = stq.error_from_wire({"code": -32602, "message": "jobs[3]: bad", "data": {"index": 3}})
        self.assertIsInstance(e, stq.InvalidRequest)
        self.assertEqual(e.index, 3)
        self.assertIsNone(stq.error_from_wire({"code": -32602, "message": "x"}).index)


class ConversionTest(unittest.TestCase):
    def test_format_duration(self):
        self.assertEqual(stq.format_duration(30), "30s")
        self.assertEqual(stq.format_duration(0), "0s")
        self.assertEqual(stq.format_duration(1.5), "1500ms")
        self.assertEqual(stq.format_duration(0.1), "100ms")
        self.assertEqual(stq.format_duration(1e-9), "1ns")
        self.assertEqual(stq.format_duration(timedelta(minutes=2)), "120s")
        self.assertEqual(stq.format_duration(timedelta(days=1, microseconds=5)), "86400000005us")
        self.assertEqual(stq.format_duration("1m30s"), "1m30s")
        self.assertEqual(stq.format_duration("1d"), "1d")
        for bad in (-1, -0.5, timedelta(seconds=-1), float("nan"), float("inf")):
            with self.assertRaises(ValueError, msg=repr(bad)):
                stq.format_duration(bad)
        for bad in (True, None, [1]):
            with self.assertRaises(TypeError, msg=repr(bad)):
                stq.format_duration(bad)

    def test_parse_duration(self):
        cases = {
            "0": timedelta(0),
            "0s": timedelta(0),
            "500ms": timedelta(milliseconds=500),
            "1m0s": timedelta(minutes=1),
            "1m30s": timedelta(seconds=90),
            "2h45m": timedelta(hours=2, minutes=45),
            "168h0m0s": timedelta(days=7),
            "1.5s": timedelta(seconds=1.5),
            "1.5\u00b5s": timedelta(microseconds=2),  # Go prints micro sign; rounded
            "3us": timedelta(microseconds=3),
            "999ns": timedelta(microseconds=1),
            "1d": timedelta(days=1),
            "1.5d": timedelta(hours=36),
        }
        for text, want in cases.items():
            self.assertEqual(stq.parse_duration(text), want, text)
        for bad in ("", "30", "1x", "s", "1m30", "1.2.3s", "d"):
            with self.assertRaises(ValueError, msg=bad):
                stq.parse_duration(bad)

    def test_duration_round_trip(self):
        for td in (timedelta(0), timedelta(seconds=1), timedelta(milliseconds=1500),
                   timedelta(days=3, seconds=7, microseconds=11)):
            self.assertEqual(stq.parse_duration(stq.format_duration(td)), td)

    def test_parse_time(self):
        self.assertEqual(stq.parse_time("2030-01-02T03:04:05.123456789Z"),
                         datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc))
        t = stq.parse_time("2030-01-02T03:04:05+02:00")
        self.assertEqual(t.utcoffset(), timedelta(hours=2))
        self.assertEqual(t, datetime(2030, 1, 2, 1, 4, 5, tzinfo=timezone.utc))
        self.assertEqual(stq.parse_time("2030-01-02T03:04:05.5-01:30").utcoffset(), -timedelta(hours=1, minutes=30))
        self.assertEqual(stq.parse_time("0001-01-01T00:00:00Z").year, 1)
        for bad in ("2030-01-02", "2030-01-02T03:04:05", "yesterday", "2030-01-02T03:04:05.Z"):
            with self.assertRaises(ValueError, msg=bad):
                stq.parse_time(bad)

    def test_format_time(self):
        utc = datetime(2030, 1, 2, 3, 4, 5, 600000, tzinfo=timezone.utc)
        self.assertEqual(stq.format_time(utc), "2030-01-02T03:04:05.600000Z")
        plus2 = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
        self.assertEqual(stq.format_time(plus2), "2030-01-02T03:04:05+02:00")
        naive = datetime(2030, 1, 2, 3, 4, 5)
        self.assertEqual(stq.parse_time(stq.format_time(naive)), naive.astimezone())
        self.assertEqual(stq.format_time("2030-01-02T03:04:05Z"), "2030-01-02T03:04:05Z")
        for t in (utc, plus2):
            self.assertEqual(stq.parse_time(stq.format_time(t)), t)
        with self.assertRaises(TypeError):
            stq.format_time(12345)

    def test_request_to_wire(self):
        run_at = datetime(2030, 1, 2, tzinfo=timezone.utc)
        wire = request_to_wire(stq.EnqueueRequest(
            queue="q", command=("sh", "-c", "true"), delay=timedelta(seconds=30), ttl=90,
            backoff="2s", debounce=0.25, deadline=timedelta(minutes=1), wait_idle=False, after=("a",)))
        self.assertEqual(wire, {"queue": "q", "command": ["sh", "-c", "true"], "delay": "30s", "ttl": "90s",
                                "backoff": "2s", "debounce": "250ms", "deadline": "60s", "wait_idle": False,
                                "after": ["a"]})
        self.assertEqual(request_to_wire({"run_at": run_at, "priority": 0, "subject": None, "future": 1}),
                         {"run_at": "2030-01-02T00:00:00Z", "priority": 0, "future": 1})
        with self.assertRaises(TypeError):
            request_to_wire({"command": "ls -l"})

    def test_job_from_dict(self):
        job = stq.Job.from_dict({
            "id": "j1", "queue": "q", "type": "exec", "subject": "", "generation": 2, "state": "DONE",
            "attempt": 1, "max_attempts": 3, "payload": {"k": [1]}, "command": None, "env": None,
            "run_at": "2030-01-02T03:04:05Z", "deadline": "1m0s", "ttl": "0s", "backoff": "1s",
            "created_at": "2030-01-02T03:04:05Z", "started_at": None, "finished_at": "2030-01-02T03:04:06.5Z",
            "exit_code": 0, "after": None, "attempts": None, "brand_new_member": {"x": 1},
            "attempts_extra": 5,
        })
        self.assertEqual(job.id, "j1")
        self.assertTrue(job.terminal)
        self.assertEqual(job.payload, {"k": [1]})
        self.assertIsNone(job.command)
        self.assertIsNone(job.started_at)
        self.assertEqual(job.deadline, timedelta(minutes=1))
        self.assertEqual(job.finished_at, datetime(2030, 1, 2, 3, 4, 6, 500000, tzinfo=timezone.utc))
        self.assertEqual(job.attempts, [])
        self.assertEqual(job.after, [])
        self.assertEqual(job.extra, {"brand_new_member": {"x": 1}, "attempts_extra": 5})
        # A superseded job in an event may carry only its key and state.
        part = stq.Event.from_dict({"kind": "job", "job_id": "j2", "job": {"id": "j2", "state": "SUPERSEDED"}})
        self.assertEqual(part.job.state, "SUPERSEDED")
        self.assertIsNone(part.job.created_at)


class LocateTest(unittest.TestCase):
    def test_explicit_home(self):
        env = {"STQ_HOME": "/ignored", "XDG_RUNTIME_DIR": "/run/user/1", "HOME": "/home/u"}
        p = _locate("/h", env, "linux")
        self.assertEqual((p.home, p.socket, p.token), ("/h", "/h/stq.sock", "/h/token"))
        self.assertEqual(p.db, "/h/stq.db")

    def test_stq_home(self):
        p = _locate(None, {"STQ_HOME": "/sh", "XDG_RUNTIME_DIR": "/run/user/1"}, "linux")
        self.assertEqual((p.socket, p.token), ("/sh/stq.sock", "/sh/token"))
        p = _locate(None, {"STQ_HOME": "rel"}, "linux")
        self.assertEqual(p.home, os.path.abspath("rel"))

    def test_defaults(self):
        p = _locate(None, {"HOME": "/home/u"}, "linux")
        self.assertEqual((p.home, p.socket), ("/home/u/.local/state/stq", "/home/u/.local/state/stq/stq.sock"))
        p = _locate(None, {"HOME": "/home/u", "XDG_STATE_HOME": "/xs"}, "linux")
        self.assertEqual(p.home, "/xs/stq")
        p = _locate(None, {"HOME": "/home/u", "XDG_STATE_HOME": "relative"}, "linux")
        self.assertEqual(p.home, "/home/u/.local/state/stq")
        p = _locate(None, {"HOME": "/home/u", "XDG_RUNTIME_DIR": "/run/user/1"}, "linux")
        self.assertEqual((p.socket, p.token), ("/run/user/1/stq/stq.sock", "/home/u/.local/state/stq/token"))
        p = _locate(None, {"HOME": "/Users/u", "XDG_STATE_HOME": "/xs"}, "darwin")
        self.assertEqual(p.home, "/Users/u/Library/Application Support/stq")
        with self.assertRaises(stq.StqError):
            _locate(None, {}, "linux")  # no HOME

    def test_socket_path_too_long(self):
        with self.assertRaises(stq.StqError) as cm:
            _locate("/" + "x" * 200, {}, "linux")
        self.assertIn("too long", str(cm.exception))


class NoDaemonTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="stq", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def test_empty_home(self):
        c = stq.Client(home=self.dir)
        with self.assertRaises(stq.NoDaemon) as cm:
            c.stats()
        sock = os.path.join(self.dir, "stq.sock")
        self.assertEqual(cm.exception.socket_path, sock)
        self.assertIn(sock, str(cm.exception))
        self.assertIn("start one with `stq daemon`", str(cm.exception))
        self.assertIsNone(cm.exception.code)

    def test_token_but_no_socket(self):
        with open(os.path.join(self.dir, "token"), "w") as f:
            f.write("abc\n")
        with self.assertRaises(stq.NoDaemon):
            stq.Client(home=self.dir).connect()

    def test_stale_socket(self):
        path = os.path.join(self.dir, "stq.sock")
        s = socket.socket(socket.AF_UNIX)
        s.bind(path)  # bound, never listening: connect is refused
        self.addCleanup(s.close)
        with self.assertRaises(stq.NoDaemon):
            stq.Client(socket_path=path, token="t").get("x")


# ---------------------------------------------------------------------------
# Integration tests against a real daemon.


class DaemonTest(unittest.TestCase):
    proc = None
    home = ""
    build_dir = ""

    @classmethod
    def setUpClass(cls):
        cls.build_dir = tempfile.mkdtemp(prefix="stq-pysdk-")
        binary = os.environ.get("STQ_TEST_BINARY")
        if not binary:
            binary = os.path.join(cls.build_dir, "stq")
            build = subprocess.run(["go", "build", "-o", binary, "."], cwd=str(REPO_ROOT),
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
            if build.returncode != 0:
                shutil.rmtree(cls.build_dir, True)
                raise RuntimeError("go build failed in %s:\n%s" % (REPO_ROOT, build.stdout))
        cls.home = tempfile.mkdtemp(prefix="stq", dir="/tmp")
        cls.log_path = os.path.join(cls.build_dir, "daemon.log")
        cls.log = open(cls.log_path, "wb")
        env = dict(os.environ, STQ_HOME=cls.home)
        # The home is given through STQ_HOME: --home is a flag of the stq
        # command itself, not of its daemon subcommand.
        cls.proc = subprocess.Popen([binary, "daemon", "--workers", "4", "--durability", "normal"],
                                    env=env, stdout=cls.log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        try:
            poll(cls._ready, START_TIMEOUT, what="the daemon to accept connections")
        except BaseException:
            cls._stop()
            raise
        cls.client = stq.Client(home=cls.home, timeout=30)

    @classmethod
    def _ready(cls):
        if cls.proc.poll() is not None:
            raise RuntimeError("daemon exited with %s:\n%s" % (cls.proc.returncode, cls._log_text()))
        if not os.path.exists(os.path.join(cls.home, "token")):
            return False
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(os.path.join(cls.home, "stq.sock"))
            return True
        except OSError:
            return False
        finally:
            s.close()

    @classmethod
    def _log_text(cls):
        try:
            with open(cls.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-4000:]
        except OSError:
            return ""

    @classmethod
    def _stop(cls):
        if cls.proc is not None and cls.proc.poll() is None:
            cls.proc.send_signal(signal.SIGTERM)
            try:
                cls.proc.wait(10)
            except subprocess.TimeoutExpired:
                cls.proc.kill()
                cls.proc.wait(10)
        cls.log.close()
        shutil.rmtree(cls.home, True)
        shutil.rmtree(cls.build_dir, True)

    @classmethod
    def tearDownClass(cls):
        client = getattr(cls, "client", None)
        if client is not None:
            client.close()
        cls._stop()

    def queue_name(self):
        """A queue of this test's own."""
        return "q-" + self.id().rsplit(".", 1)[-1]

    def wait_one(self, job_id):
        res = self.client.wait([job_id], timeout=WAIT)
        self.assertFalse(res.timed_out, "job %s did not end within %ss" % (job_id, WAIT))
        return res.jobs[0]

    # tests

    def test_discovery_via_stq_home(self):
        with mock.patch.dict(os.environ, {"STQ_HOME": self.home}):
            with stq.Client() as c:
                self.assertEqual(c.socket_path, os.path.join(self.home, "stq.sock"))
                st = c.stats()
                self.assertTrue(c.server_version)
        self.assertGreater(st.workers, 0)

    def test_enqueue_wait_get(self):
        q = self.queue_name()
        res = self.client.enqueue(queue=q, command=["sh", "-c", "echo hi"], cwd="/tmp",
                                  env={"GREETING": "hello"}, payload={"n": 1, "s": "\u00e9"},
                                  deadline="30s", backoff=timedelta(seconds=2), max_attempts=2, priority=5)
        self.assertIsInstance(res, stq.EnqueueResult)
        self.assertEqual(res.superseded, [])
        job = res.job
        self.assertEqual((job.queue, job.type, job.priority, job.max_attempts), (q, "exec", 5, 2))
        self.assertEqual(job.command, ["sh", "-c", "echo hi"])
        self.assertEqual(job.payload, {"n": 1, "s": "\u00e9"})
        self.assertEqual(job.deadline, timedelta(seconds=30))
        self.assertEqual(job.backoff, timedelta(seconds=2))
        self.assertIsNotNone(job.created_at.tzinfo)

        done = self.wait_one(job.id)
        self.assertEqual(done.state, stq.DONE)
        self.assertEqual(done.exit_code, 0)

        got = self.client.get(job.id)
        self.assertEqual(got.state, stq.DONE)
        self.assertEqual(got.exit_code, 0)
        self.assertEqual(got.attempt, 1)
        self.assertEqual(len(got.attempts), 1)
        a = got.attempts[0]
        self.assertIsInstance(a, stq.Attempt)
        self.assertEqual((a.n, a.outcome, a.exit_code), (1, "succeeded", 0))
        self.assertGreater(a.pid, 0)
        self.assertLessEqual(got.started_at, got.finished_at)
        self.assertEqual(got.env, {"GREETING": "hello"})
        self.assertEqual(got.cwd, "/tmp")

    def test_noop_and_wait_many(self):
        q = self.queue_name()
        ids = [self.client.enqueue(queue=q, type="noop").job.id for _ in range(3)]
        res = self.client.wait(ids, timeout=WAIT)
        self.assertFalse(res.timed_out)
        self.assertEqual([j.id for j in res.jobs], ids)
        self.assertTrue(all(j.state == stq.DONE for j in res.jobs))

    def test_supersede_by_subject(self):
        q = self.queue_name()
        first = self.client.enqueue(queue=q, type="noop", subject="src/a.go", delay="10s").job
        self.assertEqual(first.state, stq.QUEUED)
        second = self.client.enqueue(queue=q, type="noop", subject="src/a.go")
        self.assertEqual(second.superseded, [first.id])
        self.assertGreater(second.job.generation, first.generation)
        self.assertEqual(self.client.get(first.id).state, stq.SUPERSEDED)
        self.assertEqual(self.wait_one(second.job.id).state, stq.DONE)
        # A generation not above the highest seen is superseded on arrival.
        stale = self.client.enqueue(queue=q, type="noop", subject="src/a.go", generation=first.generation)
        self.assertEqual(stale.job.state, stq.SUPERSEDED)

    def test_enqueue_many_all_or_nothing(self):
        q = self.queue_name()
        bad = [
            {"queue": q, "type": "noop"},
            stq.EnqueueRequest(queue=q, type="noop", after=["no-such-job"]),
            {"queue": q, "type": "noop"},
        ]
        with self.assertRaises(stq.InvalidRequest) as cm:
            self.client.enqueue_many(bad)
        self.assertEqual(cm.exception.index, 1)
        self.assertEqual(cm.exception.code, -32602)
        self.assertEqual(list(self.client.list(queue=q)), [])

        good = self.client.enqueue_many([
            {"queue": q, "type": "noop", "payload": {"i": 0}, "deadline": timedelta(seconds=5)},
            stq.EnqueueRequest(queue=q, type="noop", payload={"i": 1}, subject="s"),
        ])
        self.assertEqual(len(good), 2)
        self.assertEqual([r.job.payload for r in good], [{"i": 0}, {"i": 1}])
        self.assertEqual(good[0].job.deadline, timedelta(seconds=5))
        res = self.client.wait([r.job.id for r in good], timeout=WAIT)
        self.assertEqual([j.state for j in res.jobs], [stq.DONE, stq.DONE])

    def test_enqueue_many_brief(self):
        q = self.queue_name()
        brief = self.client.enqueue_many_brief([
            {"queue": q, "type": "noop", "subject": "s", "delay": "1h"},
            stq.EnqueueRequest(queue=q, type="noop", subject="s", delay="1h"),
        ])
        self.assertEqual([type(b) for b in brief], [stq.Enqueued, stq.Enqueued])
        self.assertEqual([b.state for b in brief], [stq.QUEUED, stq.QUEUED])
        self.assertEqual(brief[1].superseded, [brief[0].id])
        self.assertEqual(brief[1].generation, brief[0].generation + 1)
        self.assertEqual(brief[0].extra, {})
        stored = self.client.get(brief[1].id)
        self.assertEqual((stored.state, stored.generation), (stq.QUEUED, brief[1].generation))
        self.assertEqual(self.client.get(brief[0].id).state, stq.SUPERSEDED)
        with self.assertRaises(stq.InvalidRequest) as cm:
            self.client.enqueue_many_brief([{"queue": q, "after": ["no-such-job"]}])
        self.assertEqual(cm.exception.index, 0)

    def test_list_paging(self):
        q = self.queue_name()
        results = self.client.enqueue_many(
            [{"queue": q, "type": "noop", "delay": "1h", "payload": {"i": i}} for i in range(25)])
        ids = {r.job.id for r in results}
        self.assertEqual(len(ids), 25)

        # The pages themselves: 10, 10, 5, the last without a cursor.
        sizes = []
        page = self.client.list_page(queue=q, limit=10)
        while True:
            sizes.append(len(page.jobs))
            if not page.next_cursor:
                break
            page = self.client.list_page(queue=q, limit=10, cursor=page.next_cursor)
        self.assertEqual(sizes, [10, 10, 5])

        with mock.patch.object(self.client, "list_page", wraps=self.client.list_page) as spy:
            jobs = list(self.client.list(queue=q, page_size=10))
        self.assertEqual(spy.call_count, 3)
        self.assertEqual(len(jobs), 25)
        self.assertEqual({j.id for j in jobs}, ids)
        created = [j.created_at for j in jobs]
        self.assertEqual(created, sorted(created, reverse=True))  # newest first
        self.assertEqual(len(list(self.client.list(states="queued", queue=q, page_size=7))), 25)
        self.assertEqual(list(self.client.list(states=[stq.DONE], queue=q)), [])
        self.assertEqual(len(list(self.client.list(queue=q, page_size=25))), 25)  # exactly one full page

    def test_tail_stored(self):
        q = self.queue_name()
        job = self.client.enqueue(queue=q, command=["sh", "-c", "printf 'l1\\nl2\\nl3\\n'"]).job
        self.wait_one(job.id)
        events = list(self.client.tail(job.id))
        self.assertTrue(all(ev.kind == "log" and ev.job_id == job.id for ev in events))
        lines = [ev.line for ev in events if ev.line.stream == "stdout"]
        self.assertEqual([ln.text for ln in lines], ["l1", "l2", "l3"])
        self.assertIsInstance(lines[0], stq.LogLine)
        self.assertEqual(lines[0].attempt, 1)
        self.assertIsNotNone(lines[0].time.tzinfo)
        rest = [ev.line.text for ev in self.client.tail(job.id, after_seq=lines[0].seq)
                if ev.line.stream == "stdout"]
        self.assertEqual(rest, ["l2", "l3"])
        page = self.client.logs(job.id)
        self.assertFalse(page.more)
        self.assertEqual([ln.seq for ln in page.lines], [ev.line.seq for ev in events])

    def test_tail_follow_ends_with_job(self):
        q = self.queue_name()
        job = self.client.enqueue(queue=q, command=["sh", "-c", "echo one; sleep 0.2; echo two"]).job
        events = []
        for ev in self.client.tail(job.id, follow=True):
            events.append(ev)
            # The main connection stays usable during a follow.
            self.assertEqual(self.client.get(job.id).id, job.id)
        texts = [ev.line.text for ev in events if ev.kind == "log"]
        self.assertEqual(texts, ["one", "two"])
        last = events[-1]
        self.assertEqual(last.kind, "job")
        self.assertEqual(last.job.state, stq.DONE)
        self.assertEqual(last.job.exit_code, 0)
        self.assertEqual(sum(1 for ev in events if ev.kind == "job" and ev.job and ev.job.terminal), 1)
        # Following a job that already ended: stored lines, then its state.
        again = list(self.client.tail(job.id, follow=True))
        self.assertEqual([ev.line.text for ev in again if ev.kind == "log"], ["one", "two"])
        self.assertEqual((again[-1].kind, again[-1].job.state), ("job", stq.DONE))
        after = list(self.client.tail(job.id, follow=True, after_seq=events[0].line.seq))
        self.assertEqual([ev.line.text for ev in after if ev.kind == "log"], ["two"])

    def test_tail_follow_stop_early_and_cancel_running(self):
        q = self.queue_name()
        job = self.client.enqueue(queue=q, command=["sh", "-c", "echo start; exec sleep 30"]).job
        gen = self.client.tail(job.id, follow=True)
        for ev in gen:
            if ev.kind == "log" and ev.line.text == "start":
                break
        conn = gen.gi_frame.f_locals["conn"]
        self.assertFalse(conn.closed)
        gen.close()
        self.assertTrue(conn.closed, "the side connection stays open after close()")
        self.assertEqual(self.client.get(job.id).state, stq.RUNNING)

        cancelled = self.client.cancel(job.id)
        self.assertEqual([j.id for j in cancelled], [job.id])
        self.assertEqual(cancelled[0].state, stq.CANCELLED)
        self.assertEqual(self.wait_one(job.id).state, stq.CANCELLED)
        # Unknown job: the follow raises on its first next().
        with self.assertRaises(stq.NotFound):
            next(self.client.tail("no-such-job", follow=True))

    def test_cancel(self):
        q = self.queue_name()
        job = self.client.enqueue(queue=q, type="noop", delay="10s").job
        res = self.client.cancel(id=job.id)
        self.assertEqual(len(res), 1)
        self.assertEqual(res[0].state, stq.CANCELLED)
        with self.assertRaises(stq.Conflict) as cm:
            self.client.cancel(job.id)
        self.assertEqual(cm.exception.code, -32003)
        with self.assertRaises(stq.NotFound):
            self.client.cancel("no-such-job")
        # By subject key.
        a = self.client.enqueue(queue=q, type="noop", subject="k1", delay="10s").job
        b = self.client.enqueue(queue=q, type="noop", subject="k2", delay="10s").job
        res = self.client.cancel(subject="k1", queue=q, type="noop")
        self.assertEqual([j.id for j in res], [a.id])
        self.assertEqual(self.client.cancel(subject="k1", queue=q, type="noop"), [])
        self.assertEqual(self.client.get(b.id).state, stq.QUEUED)
        self.client.cancel(b.id)

    def test_pause_resume(self):
        q = self.queue_name()
        self.client.pause(q)
        try:
            job = self.client.enqueue(queue=q, type="noop").job
            res = self.client.wait(job.id, timeout=0)  # a poll
            self.assertTrue(res.timed_out)
            self.assertEqual(res.jobs[0].state, stq.QUEUED)
            self.assertEqual(res.jobs[0].waiting, "queue paused")
            self.assertIn(q, self.client.stats().paused)
        finally:
            self.client.resume(q)
        self.assertNotIn(q, self.client.stats().paused)
        self.assertEqual(self.wait_one(job.id).state, stq.DONE)

    def test_retry_failed(self):
        q = self.queue_name()
        job = self.client.enqueue(queue=q, command=["sh", "-c", "exit 100"]).job
        failed = self.wait_one(job.id)
        self.assertEqual(failed.state, stq.FAILED)
        self.assertEqual(failed.exit_code, 100)
        self.assertEqual(failed.attempt, 1)  # exit 100 is a permanent failure: no retries
        self.assertTrue(failed.error)
        with self.assertRaises(stq.InvalidRequest):  # only a finished job can be retried
            self.client.retry(self.client.enqueue(queue=q, type="noop", delay="10s").job.id)

        again = self.client.retry(job.id)
        self.assertEqual(again.id, job.id)
        self.assertIn(again.state, (stq.QUEUED, stq.RUNNING, stq.FAILED))
        final = self.wait_one(job.id)
        self.assertEqual(final.state, stq.FAILED)
        self.assertGreaterEqual(len(self.client.get(job.id).attempts), 2)

    def test_stats_and_recover(self):
        q = self.queue_name()
        job = self.client.enqueue(queue=q, type="noop").job
        self.wait_one(job.id)
        st = self.client.stats()
        self.assertIsInstance(st, stq.Stats)
        self.assertEqual(st.workers, 4)
        self.assertGreaterEqual(st.running, 0)
        self.assertTrue(st.owner)
        self.assertIsNotNone(st.started.tzinfo)
        self.assertEqual(st.queues[q].get(stq.DONE), 1)
        self.assertIsInstance(st.power, stq.PowerState)
        self.assertIsInstance(st.retention.max_age, timedelta)
        rep = self.client.recover()
        self.assertIsInstance(rep, stq.RecoverReport)
        self.assertGreaterEqual(rep.scanned, 0)
        self.assertIsInstance(rep.recovered, list)

    def test_not_found(self):
        with self.assertRaises(stq.NotFound) as cm:
            self.client.get("no-such-job")
        self.assertEqual(cm.exception.code, -32001)
        with self.assertRaises(stq.NotFound):
            self.client.tail("no-such-job")
        with self.assertRaises(stq.NotFound):
            self.client.wait(["no-such-job"], timeout=1)
        self.assertTrue(self.client.stats().owner)  # the connection survived

    def test_invalid_request(self):
        with self.assertRaises(stq.InvalidRequest) as cm:
            self.client.enqueue(command=["true"], cwd="relative/dir")
        self.assertEqual(cm.exception.code, -32602)
        self.assertIsNone(cm.exception.index)
        with self.assertRaises(stq.InvalidRequest):
            self.client.enqueue(type="noop", delay="soon")
        with self.assertRaises(stq.InvalidRequest):
            self.client.list(states=["bogus"])  # the first page is fetched at once
        with self.assertRaises(stq.InvalidRequest):
            self.client.call("dev.get.v1", {"job": "x"})  # unknown member
        with self.assertRaises(stq.InvalidRequest):
            self.client.retry("")
        with self.assertRaises(stq.MethodNotFound):
            self.client.call("dev.nope.v1")
        with self.assertRaises(ValueError):  # refused before sending
            self.client.enqueue(type="noop", delay=-1)
        with self.assertRaises(TypeError):
            self.client.enqueue(type="noop", payload=object())
        self.assertTrue(self.client.stats().owner)

    def test_unauthorized(self):
        bad = stq.Client(socket_path=os.path.join(self.home, "stq.sock"), token="wrong")
        with self.assertRaises(stq.Unauthorized) as cm:
            bad.stats()
        self.assertEqual(cm.exception.code, -32000)
        with self.assertRaises(stq.Unauthorized):
            bad.connect()
        bad.close()
        with open(os.path.join(self.home, "token")) as f:
            good = stq.Client(socket_path=os.path.join(self.home, "stq.sock"), token=f.read())
        with good:
            self.assertTrue(good.stats().owner)

    def test_long_lines(self):
        q = self.queue_name()
        blob = "x" * (900 * 1024)  # near the 1 MiB payload limit
        job = self.client.enqueue(queue=q, type="noop", delay="1h", payload={"blob": blob}).job
        self.assertEqual(self.client.get(job.id).payload["blob"], blob)
        self.assertEqual([j.payload["blob"] == blob for j in self.client.list(queue=q)], [True])

    def test_threads_share_a_client(self):
        q = self.queue_name()
        job = self.client.enqueue(queue=q, type="noop").job
        errors = []

        def work():
            try:
                for _ in range(20):
                    self.assertEqual(self.client.get(job.id).id, job.id)
                    self.client.stats()
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(errors, [])

    def test_close_interrupts_blocked_wait(self):
        q = self.queue_name()
        job = self.client.enqueue(queue=q, type="noop", delay="1h").job
        c = stq.Client(home=self.home)
        c.connect()
        errors = []

        def wait():
            try:
                c.wait(job.id)  # no timeout: blocks until the job ends
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        t = threading.Thread(target=wait)
        t.start()
        poll(c._lock.locked, what="the wait to start")
        c.close()
        t.join(10)
        self.assertFalse(t.is_alive(), "close() did not interrupt the wait")
        self.assertEqual(len(errors), 1)
        self.assertIsInstance(errors[0], stq.ConnectionLost)
        self.assertEqual(c.cancel(job.id)[0].state, stq.CANCELLED)  # a new connection
        c.close()

    def test_reconnects_after_close(self):
        c = stq.Client(home=self.home)
        c.stats()
        c.close()
        self.assertTrue(c.stats().owner)
        c.close()


if __name__ == "__main__":
    unittest.main()
