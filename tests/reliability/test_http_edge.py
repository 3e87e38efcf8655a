"""The HTTP edge of ``npo serve --http`` under hostile input and day-2 operations, through
the real server (waitress) on 127.0.0.1, the real Bolt app and Alertmanager intake, and a
fake Slack Web API: bounded bodies, deep JSON, slow clients, a closed-by-default alert
intake, any severity word, one bad alert among good ones, Slack failing mid-notification
and Alertmanager's retry, readiness, refused signatures in the log, and SIGTERM draining
a child process that serves exactly as ``npo serve --http`` does."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import select as io_select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bot.alerts.alertmanager import AlertIntake, parse_routes, wsgi_handler
from bot.db.engine import make_engine
from bot.db.models import Recommendation
from bot.slack.app import app_for, slack_context, web_client
from bot.slack.serve import EdgeApp, HttpConfig, HttpServer, http_server, readiness_checks
from core.rego import RegoPolicyEngine
from tests.fakes import row_counts
from tests.reliability.test_delivery import SECRET, TEXT, replica_service, replica_settings
from tests.slack_fake import FakeSlackAPI, event_body, signed_headers

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "am-edge-token"
CHANNEL = "C1"
READ_TIMEOUT = 2.0
SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


class FlakySlackAPI(FakeSlackAPI):
    """The fake Web API, answering 500 to chosen calls of a method (numbered from 1,
    the client's retries included)."""

    def __init__(self) -> None:
        super().__init__()
        self.failing: dict[str, set[int]] = {}
        self.attempts: Counter[str] = Counter()
        self._count_lock = threading.Lock()

    def _answer(
        self, method: str, params: dict[str, Any]
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        with self._count_lock:
            self.attempts[method] += 1
            n = self.attempts[method]
        if n in self.failing.get(method, set()):
            return 500, {}, {"ok": False, "error": "internal_error"}
        return super()._answer(method, params)


@dataclass
class Edge:
    url: str
    port: int
    slack: FlakySlackAPI
    engine: Engine

    def request(
        self, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        req = urllib.request.Request(
            self.url + path, body, headers or {}, method="POST" if body is not None else "GET"
        )
        try:
            with urllib.request.urlopen(req, timeout=20) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as refused:
            return refused.code, refused.read()

    def alert(self, body: object, token: str | None = TOKEN) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        status, answer = self.request("/alertmanager", raw, headers)
        return status, json.loads(answer)

    def slack_event(self, body: str, content_type: str = "application/json") -> int:
        headers = {k: str(v[0]) for k, v in signed_headers(SECRET, body, content_type).items()}
        return self.request("/slack/events", body.encode(), headers)[0]

    def state(self) -> dict[str, Any]:
        return {"rows": row_counts(self.engine), "web_api_calls": len(self.slack.calls)}

    def recommendations(self) -> list[dict[str, Any]]:
        """Posted recommendation messages (the thread roots and resolutions have no blocks)."""
        return [m for m in self.slack.of("chat.postMessage") if "blocks" in m]


Start = Callable[..., Edge]


@pytest.fixture
def start(engine: Engine, rego_engine: RegoPolicyEngine) -> Iterator[Start]:
    """Starts the production edge (waitress, Bolt app, alert intake) on port 0."""
    running: list[tuple[HttpServer, FlakySlackAPI]] = []

    def run(
        token: str | None = TOKEN,
        allow_anonymous: bool = False,
        readiness: dict[str, Callable[[], object]] | None = None,
        database: Engine | None = None,
    ) -> Edge:
        api = FlakySlackAPI()
        settings = replica_settings(api)
        client = web_client(settings)
        service = replica_service(database or engine, rego_engine)
        ctx = slack_context(settings, service, lambda pb: [], lambda pb: None, client)
        intake = AlertIntake(ctx, client, parse_routes(""), CHANNEL)
        server = http_server(
            app_for(settings, ctx, client),
            "127.0.0.1",
            0,
            None,
            wsgi_handler(intake, token, allow_anonymous),
            config=HttpConfig(read_timeout_seconds=READ_TIMEOUT),
            readiness=readiness,
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        running.append((server, api))
        port = server.server_port
        return Edge(f"http://127.0.0.1:{port}", port, api, engine)

    yield run
    for server, api in running:
        server.shutdown(grace=1)
        api.close()


def _alert(
    fingerprint: str, summary: str = "CRC errors on leaf-1:eth1/3", **labels: str
) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {"alertname": "LinkErrors", "device": "leaf-1", **labels},
        "annotations": {"summary": summary, "description": "input errors rising"},
        "startsAt": "2026-11-25T03:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": fingerprint,
    }


def _notification(*alerts: object, group: str = '{}:{alertname="LinkErrors"}') -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": group,
        "status": "firing",
        "receiver": "npo",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am",
        "alerts": list(alerts),
    }


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


# -- bounded input ------------------------------------------------------------------------


def _raw_post(port: int, path: str, headers: dict[str, str], body: bytes) -> int:
    """POST over a raw socket; the server may answer (and close) before the body is sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        sock.sendall(head.encode())
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(body)  # may be refused early: the answer is already waiting
        answer = b""
        try:
            while b"\r\n" not in answer:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        except ConnectionResetError:
            pass
    return int(answer.split()[1]) if answer else 0


@SQLITE
def test_a_2mb_body_is_refused_with_413_and_nothing_is_stored(start: Start) -> None:
    edge = start()
    before = edge.state()
    big = json.dumps(_notification(_alert("fp-big", summary="x" * 2_000_000))).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    assert _raw_post(edge.port, "/alertmanager", headers, big) == 413
    event = event_body(
        {"type": "app_mention", "user": "U1", "text": TEXT + "x" * 2_000_000, "channel": CHANNEL},
        "EvBig",
    )
    signed = {k: str(v[0]) for k, v in signed_headers(SECRET, event, "application/json").items()}
    assert _raw_post(edge.port, "/slack/events", signed, event.encode()) == 413
    time.sleep(0.3)
    assert edge.state() == before
    assert edge.request("/healthz")[0] == 200  # the server is fine afterwards


def test_the_wsgi_app_bounds_the_body_under_any_server() -> None:
    """The WSGI app itself refuses what a server let through: a Content-Length above the
    bound, and a body stream (no Content-Length, EOF-terminated) longer than it."""
    from slack_bolt import App

    app = EdgeApp(
        App(signing_secret=SECRET, token="xoxb", token_verification_enabled=False),
        max_body_bytes=1024,
    )
    statuses: list[str] = []

    def call(**environ: Any) -> None:
        base = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/slack/events",
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
        b"".join(app({**base, **environ}, lambda status, _h, *_: statuses.append(status)))

    call(CONTENT_LENGTH="2000000", **{"wsgi.input": io.BytesIO(b"{}")})
    call(**{"wsgi.input": io.BytesIO(b"x" * 5000), "wsgi.input_terminated": True})
    assert [s.split()[0] for s in statuses] == ["413", "413"]


@SQLITE
def test_json_nested_1000_deep_is_a_400_not_a_500(start: Start) -> None:
    edge = start()
    before = edge.state()
    labels = '{"a": ' * 1000 + '"x"' + "}" * 1000
    alert = '{"version": "4", "groupKey": "g", "alerts": [{"status": "firing", "labels": '
    status, answer = edge.alert((alert + labels + "}]}").encode())
    assert status == 400 and "nested too deeply" in answer["error"]
    # Slack: as an Events API body and as an interactivity payload (JSON in a form field)
    assert edge.slack_event('{"type": "event_callback", "event": ' + _deep(1000) + "}") == 400
    payload = '{"type": "block_actions", "actions": ' + _deep(1000) + "}"
    form = "payload=" + urllib.parse.quote(payload)
    assert edge.slack_event(form, "application/x-www-form-urlencoded") == 400
    time.sleep(0.3)
    assert edge.state() == before


# -- slow clients -------------------------------------------------------------------------


@SQLITE
def test_slow_clients_do_not_delay_others_and_are_cut_at_the_read_timeout(start: Start) -> None:
    edge = start()
    slow = [socket.create_connection(("127.0.0.1", edge.port), timeout=5) for _ in range(50)]
    header = b"POST /alertmanager HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000
    closed_after: dict[int, float] = {}
    t0 = time.monotonic()
    stop = threading.Event()

    def trickle() -> None:  # one byte per client every 0.1 s: never idle, never done
        for i in range(len(header)):
            for n, sock in enumerate(slow):
                if n in closed_after:
                    continue
                readable, _, _ = io_select.select([sock], [], [], 0)
                try:
                    if readable and sock.recv(1024) == b"":
                        raise ConnectionResetError
                    sock.send(header[i : i + 1])
                except OSError:
                    closed_after[n] = time.monotonic() - t0
            if stop.wait(0.1) or len(closed_after) == len(slow):
                return

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        time.sleep(0.5)  # every slow client has started its request
        began = time.perf_counter()
        status, _ = edge.alert(_notification(_alert("fp-normal")))
        answered = time.perf_counter() - began
        assert status == 200
        assert answered < 1.0, f"a normal request waited {answered:.2f}s behind slow clients"
        trickler.join(timeout=READ_TIMEOUT + 6)
        assert len(closed_after) == len(slow), f"{len(slow) - len(closed_after)} still open"
        assert max(closed_after.values()) < READ_TIMEOUT + 3
        assert min(closed_after.values()) >= READ_TIMEOUT - 0.2
    finally:
        stop.set()
        for sock in slow:
            sock.close()


# -- the Alertmanager intake --------------------------------------------------------------


@SQLITE
def test_the_intake_is_closed_without_a_token_unless_anonymous_is_explicit(start: Start) -> None:
    closed = start(token=None)
    for token in (None, ""):
        status, answer = closed.alert(_notification(_alert("fp-1")), token=token)
        assert status == 401 and "NPO_ALERTMANAGER_TOKEN" in answer["error"]
    assert start(token="").alert(_notification(_alert("fp-1")))[0] == 401  # empty ≠ a token
    assert closed.recommendations() == []
    anonymous = start(token=None, allow_anonymous=True)
    assert anonymous.alert(_notification(_alert("fp-2")), token=None) == (
        200,
        {"recommended": 1, "repeated": 0, "resolved": 0},
    )


@SQLITE
def test_severity_warning_is_accepted_as_medium(start: Start) -> None:
    edge = start()
    status, answer = edge.alert(_notification(_alert("fp-warn", severity="warning")))
    assert (status, answer["recommended"]) == (200, 1)
    with Session(edge.engine) as session:
        rec = session.exec(select(Recommendation)).one()
        assert json.loads(rec.decision_json)["scenario"]["severity"] == "medium"


@SQLITE
def test_a_malformed_alert_is_named_and_its_siblings_are_posted(start: Start) -> None:
    edge = start()
    bad = {**_alert("fp-b"), "labels": ["not", "an", "object"]}
    note = _notification(_alert("fp-a", "first"), bad, _alert("fp-c", "third"))
    status, answer = edge.alert(note)
    assert status == 400  # not retried: the malformed alert would fail again
    assert [f["index"] for f in answer["failed"]] == [1] and "alerts[1]" in answer["error"]
    assert answer["recommended"] == 2
    assert len(edge.recommendations()) == 2
    with Session(edge.engine) as session:
        events = set(session.exec(select(Recommendation.source_event_id)).all())
    assert events == {"alert:fp-a:2026-11-25T03:00:00Z", "alert:fp-c:2026-11-25T03:00:00Z"}


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_slack_failing_answers_503_and_the_retry_posts_each_alert_exactly_once(
    start: Start,
) -> None:
    edge = start()
    # chat.postMessage calls: 1 the thread root, 2 alert 1, 3–6 alert 2 with the client's
    # three retries (all 500), 7 alert 3.
    edge.slack.failing["chat.postMessage"] = {3, 4, 5, 6}
    note = _notification(_alert("fp-1", "one"), _alert("fp-2", "two"), _alert("fp-3", "three"))
    status, answer = edge.alert(note)
    assert status == 503, answer
    assert [f["index"] for f in answer["failed"]] == [1] and answer["failed"][0]["retry"]
    assert answer["recommended"] == 2
    assert len(edge.recommendations()) == 2
    status, answer = edge.alert(note)  # Alertmanager retries the whole notification
    assert (status, answer) == (200, {"recommended": 1, "repeated": 2, "resolved": 0})
    assert edge.alert(note) == (200, {"recommended": 0, "repeated": 3, "resolved": 0})
    with Session(edge.engine) as session:
        recs = session.exec(select(Recommendation)).all()
        posted_ts = {r.message_ts for r in recs if r.message_ts}
    assert len(recs) == 3 and len(posted_ts) == 3  # every alert's message reached Slack
    assert len(edge.recommendations()) == 3  # each exactly once: none lost, none doubled


@SQLITE
def test_an_unreachable_database_answers_503_so_alertmanager_retries(start: Start) -> None:
    edge = start(database=make_engine("postgresql+psycopg://npo@127.0.0.1:1/none"))
    status, answer = edge.alert(_notification(_alert("fp-db1"), _alert("fp-db2")))
    assert status == 503
    assert [f["index"] for f in answer["failed"]] == [0, 1]
    assert all(f["retry"] and "OperationalError" in f["error"] for f in answer["failed"])
    assert edge.recommendations() == []


@SQLITE
def test_resolved_alerts_are_reported_once_across_a_retry(start: Start) -> None:
    edge = start()
    assert edge.alert(_notification(_alert("fp-r1"), _alert("fp-r2")))[0] == 200
    resolved = _notification(
        {**_alert("fp-r1"), "status": "resolved"}, {**_alert("fp-r2"), "status": "resolved"}
    )
    resolved["status"] = "resolved"
    calls = edge.slack.attempts["chat.postMessage"]
    edge.slack.failing["chat.postMessage"] = set(range(calls + 2, calls + 6))  # the 2nd one
    status, answer = edge.alert(resolved)
    assert status == 503 and answer["resolved"] == 1
    assert edge.alert(resolved) == (200, {"recommended": 0, "repeated": 1, "resolved": 1})
    texts = [m["text"] for m in edge.slack.of("chat.postMessage") if "Resolved" in m["text"]]
    assert len(texts) == 2


# -- readiness and liveness ---------------------------------------------------------------


@SQLITE
def test_readyz_names_an_unreachable_database(
    start: Start, engine: Engine, rego_engine: RegoPolicyEngine
) -> None:
    ready = start(readiness=readiness_checks(engine, lambda: 12, rego_engine))
    status, body = ready.request("/readyz")
    assert status == 200
    assert json.loads(body) == {
        "ready": True,
        "checks": {"database": "ok", "vector_store": "ok", "policies": "ok"},
    }
    gone = make_engine("postgresql+psycopg://npo@127.0.0.1:1/none")
    broken = start(readiness=readiness_checks(gone, lambda: 12, rego_engine))
    status, body = broken.request("/readyz")
    answer = json.loads(body)
    assert status == 503 and answer["ready"] is False
    assert answer["checks"]["database"].startswith("OperationalError")
    assert answer["checks"]["policies"] == "ok"
    assert broken.request("/healthz") == (200, b'{"ok": true}')  # liveness does no I/O


# -- refused signatures are logged --------------------------------------------------------


@SQLITE
def test_a_forged_signature_is_logged_without_body_or_secret(
    start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    edge = start()  # Bolt's loggers are configured now, with the root at DEBUG
    body = event_body({"type": "app_mention", "user": "U1", "text": "MARKER-BODY"}, "EvForged")
    stale = {k: str(v[0]) for k, v in signed_headers(SECRET, body, "application/json", 600).items()}
    wrong = {k: str(v[0]) for k, v in signed_headers("nope", body, "application/json").items()}
    caplog.clear()
    assert edge.request("/slack/events", body.encode(), stale)[0] == 401
    assert edge.request("/slack/events", body.encode(), wrong)[0] == 401
    # Ours only: waitress warns of its task queue depth on a loaded machine.
    warnings = [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and not r.name.startswith("waitress")
    ]
    assert [r.name for r in warnings] == ["npo.serve", "npo.serve"]
    first, second = (r.getMessage() for r in warnings)
    assert "/slack/events" in first and "127.0.0.1" in first and "stale timestamp" in first
    assert "does not match" in second
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert "MARKER-BODY" not in everything and SECRET not in everything


# -- SIGTERM drains -----------------------------------------------------------------------


def serve_child(
    api_url: str, listener_seconds: str, grace_seconds: str, request_seconds: str
) -> None:
    """The serving function in a child process, as ``npo serve --http`` runs it: the real
    Bolt app on our listener pool, with a lazy listener that takes ``listener_seconds``
    and an ``/alertmanager`` handler that takes ``request_seconds``."""
    from slack_bolt import App
    from slack_sdk import WebClient

    from bot.slack.app import ListenerPool
    from bot.slack.serve import serve_http

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    pool = ListenerPool(2)
    app = App(
        signing_secret=SECRET,
        client=WebClient(token="xoxb", base_url=api_url),
        token_verification_enabled=False,
        listener_executor=pool,
    )

    def acknowledge(ack: Callable[[], None]) -> None:
        ack()

    def slow_mention(client: WebClient) -> None:
        client.chat_postMessage(channel=CHANNEL, text="started")
        time.sleep(float(listener_seconds))
        client.chat_postMessage(channel=CHANNEL, text="finished")

    app.event("app_mention")(ack=acknowledge, lazy=[slow_mention])

    def slow_alerts(environ: dict[str, Any]) -> tuple[str, bytes]:
        time.sleep(float(request_seconds))
        return "200 OK", b'{"slow": true}'

    left = serve_http(
        app, "127.0.0.1", 0, None, slow_alerts, listeners=pool, grace_seconds=float(grace_seconds)
    )
    sys.exit(1 if left else 0)


@dataclass
class Child:
    proc: subprocess.Popen[str]
    port: int

    def stop(self) -> tuple[int, float, str]:
        """SIGTERM; (exit code, seconds until it exited, its log)."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, time.monotonic() - t0, err


@pytest.fixture
def child(slack_api: FakeSlackAPI) -> Iterator[Callable[[float, float, float], Child]]:
    procs: list[subprocess.Popen[str]] = []

    def spawn(listener_seconds: float, grace_seconds: float, request_seconds: float) -> Child:
        code = "import sys; from tests.reliability.test_http_edge import serve_child; "
        code += "serve_child(*sys.argv[1:])"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                code,
                slack_api.url,
                *(str(x) for x in (listener_seconds, grace_seconds, request_seconds)),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        procs.append(proc)
        assert proc.stdout is not None
        ready, _, _ = io_select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else ""  # "listening on http://127.0.0.1:PORT"
        if "listening on" not in line:
            proc.kill()
            pytest.fail(f"the child did not start: {proc.communicate()[1][-3000:]}")
        return Child(proc, int(line.split("127.0.0.1:")[1].split()[0]))

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def slack_api() -> Iterator[FakeSlackAPI]:
    api = FakeSlackAPI()
    yield api
    api.close()


def _mention(port: int) -> int:
    body = event_body({"type": "app_mention", "user": "U1", "text": "hi", "channel": CHANNEL}, "E1")
    headers = {k: str(v[0]) for k, v in signed_headers(SECRET, body, "application/json").items()}
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/slack/events", body.encode(), headers, method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return int(resp.status)


def _texts(api: FakeSlackAPI) -> list[str]:
    return [m["text"] for m in api.of("chat.postMessage")]


def test_sigterm_lets_in_flight_requests_and_listeners_finish(
    child: Callable[[float, float, float], Child], slack_api: FakeSlackAPI
) -> None:
    served = child(1.0, 10, 2.0)
    assert _mention(served.port) == 200
    slack_api.wait_for("chat.postMessage")  # the lazy listener is working
    answers: list[int] = []
    request = urllib.request.Request(
        f"http://127.0.0.1:{served.port}/alertmanager", b"{}", method="POST"
    )
    sender = threading.Thread(
        target=lambda: answers.append(urllib.request.urlopen(request, timeout=10).status)
    )
    sender.start()
    time.sleep(0.3)  # the slow request is in flight
    code, took, log = served.stop()
    sender.join()
    assert answers == [200]  # the in-flight request was answered
    assert _texts(slack_api) == ["started", "finished"]  # the listener's post landed
    assert code == 0, log
    assert took < 10, f"exited {took:.1f}s after SIGTERM"
    assert "drained" in log


def test_sigterm_gives_up_on_a_listener_slower_than_the_grace(
    child: Callable[[float, float, float], Child], slack_api: FakeSlackAPI
) -> None:
    served = child(60, 1.5, 0)
    assert _mention(served.port) == 200
    slack_api.wait_for("chat.postMessage")
    code, took, log = served.stop()
    assert 1.4 <= took < 6, f"exited {took:.1f}s after SIGTERM (grace 1.5s)"
    assert code == 1
    line = next(x for x in log.splitlines() if "grace" in x and "ran out" in x)
    assert line.startswith("WARNING") and "slow_mention" in line
    assert _texts(slack_api) == ["started"]
