"""Running the Slack app: Socket Mode (an app token) or HTTP with ``GET /healthz``."""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.metrics import Metrics

StartResponse = Callable[..., Any]
log = logging.getLogger("npo.serve")
KNOWN_PATHS = frozenset({"/slack/events", "/healthz", "/metrics", "/alertmanager"})


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


PostHandler = Callable[[dict[str, Any]], tuple[str, bytes]]


def wsgi_app(
    app: App, metrics: Metrics | None = None, alerts: PostHandler | None = None
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    slack = SlackRequestHandler(app)

    def route(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if metrics is None or path not in KNOWN_PATHS:
            return dispatch(environ, start_response)
        with metrics.latency.labels(path).time():
            return dispatch(environ, start_response)

    def dispatch(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if path == "/metrics" and method == "GET" and metrics is not None:
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
            return [generate_latest(metrics.registry)]
        if path == "/alertmanager" and method == "POST" and alerts is not None:
            status, body = alerts(environ)
            start_response(status, [("Content-Type", "application/json")])
            return [body]
        if path == "/healthz" and method == "GET":
            body = json.dumps({"ok": True}).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        if path == "/slack/events" and method == "POST":
            try:
                return slack(environ, start_response)
            except (TypeError, ValueError, KeyError, AttributeError) as exc:
                # Bolt parses the body before it checks the signature, and some shapes
                # Slack never sends make that parsing raise: a client error, not ours.
                log.warning("malformed Slack request: %s: %s", type(exc).__name__, exc)
                start_response("400 Bad Request", [("Content-Type", "text/plain")])
                return [b"malformed request"]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]

    return route


def http_server(
    app: App,
    host: str,
    port: int,
    metrics: Metrics | None = None,
    alerts: PostHandler | None = None,
) -> WSGIServer:
    return make_server(
        host,
        port,
        wsgi_app(app, metrics, alerts),
        server_class=_ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )


def serve_http(
    app: App,
    host: str,
    port: int,
    metrics: Metrics | None = None,
    alerts: PostHandler | None = None,
) -> None:
    server = http_server(app, host, port, metrics, alerts)

    def stop(*_: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    print(
        f"listening on http://{host}:{server.server_port} "
        "(POST /slack/events, GET /healthz, GET /metrics)"
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()


def serve_socket_mode(app: App, app_token: str) -> None:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    SocketModeHandler(app, app_token).start()  # type: ignore[no-untyped-call]
