"""Running the Slack app: Socket Mode (an app token) or HTTP behind waitress.

HTTP routes: ``POST /slack/events`` (Bolt), ``POST /alertmanager``, ``GET /metrics``,
``GET /healthz`` (liveness: no I/O) and ``GET /readyz`` (readiness: the checks the
composition root hands in). Input is bounded here, whatever server runs the WSGI app: a
body above ``max_body_bytes`` is a 413, and JSON too deep to parse is a 400. waitress
buffers each request asynchronously before a worker thread sees it, so slow clients hold
a socket, not a thread, and each request must arrive whole within the read timeout.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer

from bot.reporting.metrics import Metrics

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from bot.slack.app import ListenerPool
    from core.policy import SafetyPolicyEngine

StartResponse = Callable[..., Any]
WsgiCallable = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
PostHandler = Callable[[dict[str, Any]], tuple[str, bytes]]
Check = Callable[[], object]  # raises when the dependency is not usable
log = logging.getLogger("npo.serve")
KNOWN_PATHS = frozenset({"/slack/events", "/healthz", "/readyz", "/metrics", "/alertmanager"})
SIGNATURE_WINDOW_S = 5 * 60  # Slack's (and Bolt's) replay window
_JSON = [("Content-Type", "application/json")]


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """The HTTP edge's bounds (Settings: ``max_body_bytes``, ``read_timeout_seconds``,
    ``http_threads``, ``http_connection_limit``, ``readiness_timeout_seconds``)."""

    max_body_bytes: int = 1_048_576
    read_timeout_seconds: float = 10.0
    threads: int = 8
    connection_limit: int = 1000
    readiness_timeout_seconds: float = 3.0


def _answer(start_response: StartResponse, status: str, body: object) -> list[bytes]:
    start_response(status, _JSON)
    return [json.dumps(body).encode()]


class BodyTooLargeError(Exception):
    """The request body is above the configured bound."""


def _read_body(environ: dict[str, Any], limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes (BodyTooLargeError above it, ValueError for a
    Content-Length that is not a number). Reads past a declared length only on an
    EOF-terminated stream, as PEP 3333 allows."""
    raw = str(environ.get("CONTENT_LENGTH") or "").strip()
    if raw and not raw.lstrip("-").isdigit():
        raise ValueError(f"Content-Length: {raw[:40]!r} is not a number")
    declared = int(raw) if raw else None
    if declared is not None and (declared < 0 or declared > limit):
        if declared < 0:
            raise ValueError(f"Content-Length: {declared} is negative")
        raise BodyTooLargeError
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    if environ.get("wsgi.input_terminated"):
        body = bytes(stream.read(limit + 1))
        if len(body) > limit:
            raise BodyTooLargeError
        return body if declared is None else body[:declared]
    return bytes(stream.read(declared or 0))


def signature_refusal_reason(environ: Mapping[str, Any], now: float) -> str:
    """Why Bolt refused a request's signature, from its headers alone (no secret, no body)."""
    timestamp = str(environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP") or "")
    signature = str(environ.get("HTTP_X_SLACK_SIGNATURE") or "")
    if not timestamp or not signature:
        return "missing signature headers"
    if not timestamp.isdigit():
        return "timestamp is not a number"
    if abs(now - int(timestamp)) > SIGNATURE_WINDOW_S:
        return "stale timestamp (outside the 5-minute window)"
    if not signature.startswith("v0="):
        return "unknown signature version"
    return "signature does not match the body"


class EdgeApp:
    """The WSGI callable of ``npo serve --http``. It also keeps the requests in flight, so
    a shutdown can wait for them and name those still running when its grace runs out."""

    def __init__(
        self,
        app: App,
        metrics: Metrics | None = None,
        alerts: PostHandler | None = None,
        max_body_bytes: int = 1_048_576,
        readiness: Mapping[str, Check] | None = None,
        readiness_timeout_seconds: float = 3.0,
    ) -> None:
        self._slack = SlackRequestHandler(app)
        self._metrics, self._alerts = metrics, alerts
        self._max_body = max_body_bytes
        self._readiness = dict(readiness or {})
        self._readiness_timeout = readiness_timeout_seconds
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._in_flight: dict[int, tuple[str, float]] = {}
        self.draining = False

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        key = next(self._ids)
        with self._lock:
            self._in_flight[key] = (f"{environ.get('REQUEST_METHOD', '')} {path}", time.monotonic())
        try:
            if self._metrics is None or path not in KNOWN_PATHS:
                return self._dispatch(environ, start_response)
            with self._metrics.latency.labels(path).time():
                return self._dispatch(environ, start_response)
        finally:
            with self._lock:
                del self._in_flight[key]

    def in_flight(self) -> list[str]:
        """The requests being handled right now, with how long each has been running."""
        now = time.monotonic()
        with self._lock:
            return [f"{what} ({now - t0:.1f}s)" for what, t0 in self._in_flight.values()]

    def _dispatch(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if path == "/healthz" and method == "GET":
            return _answer(start_response, "200 OK", {"ok": True})
        if path == "/readyz" and method == "GET":
            return self._ready(start_response)
        if path == "/metrics" and method == "GET" and self._metrics is not None:
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
            return [generate_latest(self._metrics.registry)]
        posted = path == "/slack/events" or (path == "/alertmanager" and self._alerts is not None)
        if not posted or method != "POST":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        if self.draining:
            return _answer(start_response, "503 Service Unavailable", {"error": "shutting down"})
        try:
            body = _read_body(environ, self._max_body)
        except BodyTooLargeError:
            limit = self._max_body
            return _answer(
                start_response,
                "413 Payload Too Large",
                {"error": f"request body larger than {limit} bytes (NPO_MAX_BODY_BYTES)"},
            )
        except ValueError as exc:
            return _answer(start_response, "400 Bad Request", {"error": str(exc)})
        environ = {**environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
        if path == "/alertmanager" and self._alerts is not None:
            status, answer = self._alerts(environ)
            start_response(status, _JSON)
            return [answer]
        return self._slack_events(environ, start_response)

    def _slack_events(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        statuses: list[str] = []

        def recording(status: str, headers: Any, *exc_info: Any) -> Any:
            statuses.append(status)
            return start_response(status, headers, *exc_info)

        try:
            answer = list(self._slack(environ, recording))
        except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
            # Bolt parses the body before it checks the signature; shapes Slack never
            # sends (JSON nested past the parser's depth, a form field that is not JSON,
            # bytes that are not UTF-8) make that parsing raise: a client error, not ours.
            log.warning("malformed Slack request: %s: %.200s", type(exc).__name__, exc)
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [b"malformed request"]
        if statuses and statuses[0].startswith("401"):
            log.warning(
                "refused a Slack request to %s from %s: %s",
                environ.get("PATH_INFO", ""),
                environ.get("REMOTE_ADDR", "?"),
                signature_refusal_reason(environ, time.time()),
            )
        return answer

    def _ready(self, start_response: StartResponse) -> list[bytes]:
        if self.draining:
            checks = {"shutdown": "draining"}
        else:
            checks = run_checks(self._readiness, self._readiness_timeout)
        ready = all(v == "ok" for v in checks.values())
        status = "200 OK" if ready else "503 Service Unavailable"
        return _answer(start_response, status, {"ready": ready, "checks": checks})


def run_checks(checks: Mapping[str, Check], timeout: float) -> dict[str, str]:
    """Every check at once, each on its own daemon thread: a dependency that hangs
    answers ``timed out`` after ``timeout`` seconds instead of holding the probe."""
    results: dict[str, str] = dict.fromkeys(checks, f"timed out after {timeout:g}s")

    def run(name: str, check: Check) -> None:
        try:
            check()
        except Exception as exc:
            log.warning("readiness check %s failed: %s: %s", name, type(exc).__name__, exc)
            first_line = (str(exc).splitlines() or [""])[0]
            results[name] = f"{type(exc).__name__}: {first_line[:200]}"
        else:
            results[name] = "ok"

    threads = [
        threading.Thread(target=run, args=item, name=f"readyz-{item[0]}", daemon=True)
        for item in checks.items()
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return dict(results)


def readiness_checks(
    engine: Engine, count_chunks: Callable[[], int] | None, spe: SafetyPolicyEngine
) -> dict[str, Check]:
    """What ``/readyz`` asks: the database answers, the vector store answers, and the
    policies are loaded and evaluate (one probe decision)."""
    from sqlalchemy import text

    from core.policy import Action
    from core.scenario import Scenario

    def database() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def policies() -> None:
        verdict = spe.evaluate(Scenario("link", "crc_errors"), Action("readiness_probe"))
        if not verdict.policies_checked:
            raise RuntimeError("no policy was evaluated (is NPO_POLICIES_DIR empty?)")

    checks: dict[str, Check] = {"database": database}
    if count_chunks is not None:
        checks["vector_store"] = count_chunks
    checks["policies"] = policies
    return checks


class _DeadlineChannel(HTTPChannel):
    """A connection that must deliver each request (headers and body) within the read
    timeout. waitress's own channel_timeout counts inactivity, which a client trickling
    one byte a second never reaches."""

    reading_since: float | None = None

    def received(self, data: bytes) -> bool:
        if data and self.reading_since is None:
            self.reading_since = time.monotonic()
        result = bool(super().received(data))
        if self.request is None:  # nothing half-received left
            self.reading_since = None
        return result


class _WaitressServer(TcpWSGIServer):
    channel_class = _DeadlineChannel
    read_timeout = 10.0

    def maintenance(self, now: Any) -> None:
        super().maintenance(now)
        cutoff = time.monotonic() - self.read_timeout
        channels: dict[int, Any] = self.active_channels  # type: ignore[assignment]  # stub
        for channel in list(channels.values()):
            since = getattr(channel, "reading_since", None)
            if since is not None and since < cutoff:
                channel.will_close = True


class HttpServer:
    """waitress serving an EdgeApp on one TCP socket; ``shutdown`` drains it."""

    def __init__(self, edge: EdgeApp, host: str, port: int, config: HttpConfig) -> None:
        self.edge = edge
        server = _WaitressServer(
            edge,
            host=host,
            port=port,
            threads=config.threads,
            connection_limit=config.connection_limit,
            max_request_body_size=config.max_body_bytes,
            max_request_header_size=64 * 1024,
            channel_timeout=max(1, math.ceil(config.read_timeout_seconds)),
            cleanup_interval=max(1, math.ceil(config.read_timeout_seconds / 4)),
            asyncore_use_poll=True,  # select() stops at 1,024 descriptors
            ident="npo",
            expose_tracebacks=False,
        )
        self._server: Any = cast(Any, server)  # the stubs miss attributes used here
        self._server.read_timeout = config.read_timeout_seconds
        self._map = self._server._map
        self._running = threading.Event()
        self._stopped = threading.Event()
        self._closed = False

    @property
    def server_port(self) -> int:
        return int(self._server.effective_port)

    def serve_forever(self) -> None:
        self._running.set()
        try:
            self._server.run()
        finally:
            self._stopped.set()

    def _in_loop(self, thunk: Callable[[], None]) -> None:
        """Run ``thunk`` on the event loop's thread (waitress's channels are not
        thread-safe), or here when the loop is not running or can no longer be woken
        (its wake-up pipe is closed: a write to its old descriptor number could land in
        whatever file reused it, so it is not attempted)."""
        trigger = self._server.trigger
        if not self._running.is_set() or self._stopped.is_set():
            thunk()
            return
        if not getattr(trigger, "_closed", False):
            done = threading.Event()

            def run() -> None:
                try:
                    thunk()
                finally:
                    done.set()

            try:
                trigger.pull_trigger(run)
            except OSError:  # closed in between
                pass
            else:
                if not done.wait(5):
                    log.warning("HTTP event loop did not run a shutdown step within 5 s")
                return
        log.warning("HTTP event loop cannot be woken (its pipe is closed): closing from here")
        thunk()

    def _busy(self) -> bool:
        """A request queued, running, or its response not yet flushed to the client."""
        for _ in range(3):
            try:
                channels = list(self._server.active_channels.values())
                break
            except RuntimeError:  # the loop thread changed the dict meanwhile
                continue
        else:
            return True
        return bool(self.edge.in_flight()) or any(
            ch.requests or ch.total_outbufs_len for ch in channels
        )

    def stop_accepting(self) -> None:
        """Close the listening socket: new connections are refused, and requests on open
        connections are answered 503 (readiness too), so balancers move on."""
        self.edge.draining = True

        def close_listener() -> None:
            self._server.accepting = False
            wasyncore.dispatcher.close(self._server)

        if not self._closed:
            self._in_loop(close_listener)

    def drain(self, timeout: float) -> list[str]:
        """Wait up to ``timeout`` seconds for the requests in flight; those still running."""
        deadline = time.monotonic() + timeout
        while self._busy() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self._busy():
            return []
        return self.edge.in_flight() or ["a response still being sent to its client"]

    def shutdown(self, grace: float = 5.0) -> list[str]:
        """Stop accepting, drain within ``grace``, close every connection and the worker
        threads. Returns the requests that were still running."""
        self.stop_accepting()
        left = self.drain(grace)
        self.server_close()
        return left

    def server_close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.edge.draining = True
        self._in_loop(lambda: wasyncore.close_all(self._map))
        if self._running.is_set():
            self._stopped.wait(5)
        self._server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)


def http_server(
    app: App,
    host: str,
    port: int,
    metrics: Metrics | None = None,
    alerts: PostHandler | None = None,
    *,
    config: HttpConfig | None = None,
    readiness: Mapping[str, Check] | None = None,
) -> HttpServer:
    config = config or HttpConfig()
    edge = EdgeApp(
        app,
        metrics,
        alerts,
        max_body_bytes=config.max_body_bytes,
        readiness=readiness,
        readiness_timeout_seconds=config.readiness_timeout_seconds,
    )
    return HttpServer(edge, host, port, config)


def serve_http(
    app: App,
    host: str,
    port: int,
    metrics: Metrics | None = None,
    alerts: PostHandler | None = None,
    *,
    config: HttpConfig | None = None,
    readiness: Mapping[str, Check] | None = None,
    listeners: ListenerPool | None = None,
    grace_seconds: float = 20.0,
) -> list[str]:
    """Serve until SIGTERM or SIGINT, then stop accepting, let the requests in flight and
    the listener work (Bolt's lazy listeners) finish within the grace, and return. Returns
    what was still running when the grace ran out (logged), empty after a clean drain."""
    server = http_server(app, host, port, metrics, alerts, config=config, readiness=readiness)
    stop = threading.Event()
    received: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    loop = threading.Thread(target=server.serve_forever, name="npo-http", daemon=True)
    loop.start()
    print(
        f"listening on http://{host}:{server.server_port} (POST /slack/events, "
        "POST /alertmanager, GET /healthz, GET /readyz, GET /metrics)",
        flush=True,
    )
    try:
        while not stop.wait(0.1) and loop.is_alive():
            pass
        deadline = time.monotonic() + grace_seconds
        log.info("%s: draining (grace %gs)", received[0] if received else "stopped", grace_seconds)
        server.stop_accepting()
        left = [f"request {r}" for r in server.drain(grace_seconds)]
        if listeners is not None:
            remaining = max(0.0, deadline - time.monotonic())
            left += [f"listener {w}" for w in listeners.drain(remaining)]
        if left:
            log.warning(
                "shutdown grace of %gs ran out; abandoning: %s", grace_seconds, "; ".join(left)
            )
        else:
            log.info("drained: every request and listener finished")
        return left
    finally:
        server.server_close()
        for s, handler in previous.items():
            signal.signal(s, handler)


def serve_socket_mode(app: App, app_token: str) -> None:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    SocketModeHandler(app, app_token).start()  # type: ignore[no-untyped-call]
