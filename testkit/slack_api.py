"""A small fake of the Slack Web API on 127.0.0.1 (port 0) that records every call, and
helpers that build request bodies as Slack sends them and sign them (v0 signatures)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from slack_sdk.signature import SignatureVerifier


class FakeSlackAPI:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.received_at: list[float] = []  # time.perf_counter() of each call in ``calls``
        self.scripted: dict[str, list[tuple[int, dict[str, str], dict[str, Any]]]] = {}
        self._lock = threading.Lock()
        self._ts = 1_700_000_000
        self._hanging: set[str] = set()
        self._released = threading.Event()
        self.connections = 0  # TCP connections accepted: kept-alive clients reuse theirs
        self._open: set[socket.socket] = set()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # as Slack's edge: connections stay open
            # Headers and body go out as two writes; on a kept-alive connection Nagle's
            # algorithm holds the body until the client's delayed ACK (40 ms a response).
            disable_nagle_algorithm = True

            def setup(self) -> None:
                super().setup()
                with fake._lock:
                    fake.connections += 1
                    fake._open.add(self.connection)

            def finish(self) -> None:
                with fake._lock:
                    fake._open.discard(self.connection)
                super().finish()

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                data = self.rfile.read(length)
                if "/upload/" in self.path:  # the file bytes of files_upload_v2
                    method, params = "upload", {"path": self.path, "bytes": length}
                else:
                    method = self.path.rsplit("/", 1)[-1]
                    raw = data.decode()
                    if "json" in (self.headers.get("content-type") or ""):
                        params = json.loads(raw or "{}")
                    else:
                        params = {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}
                status, headers, body = fake._answer(method, params)
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/"

    def hang(self, method: str) -> None:
        """Calls of ``method`` are received but never answered (until ``close``): a Web
        API call in flight when its process dies."""
        self._hanging.add(method)

    def drop_connections(self) -> None:
        """Close every open connection from the server's side, as an edge that timed
        them out while idle."""
        with self._lock:
            held = list(self._open)
        for sock in held:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, method: str, status: int, headers: dict[str, str] | None = None) -> None:
        body = {"ok": False, "error": "ratelimited" if status == 429 else "internal_error"}
        self.scripted.setdefault(method, []).append((status, headers or {}, body))

    def _answer(
        self, method: str, params: dict[str, Any]
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        if method in self._hanging:
            self._released.wait(600)
            return 503, {}, {"ok": False, "error": "closed"}
        with self._lock:
            scripted = self.scripted.get(method)
            if scripted:
                return scripted.pop(0)
            self.calls.append((method, params))
            self.received_at.append(time.perf_counter())
            self._ts += 1
            ts = f"{self._ts}.000100"
        if method == "auth.test":
            return (
                200,
                {},
                {"ok": True, "user_id": "UBOT", "bot_id": "BBOT", "team_id": "T1", "user": "npo"},
            )
        if method == "chat.postMessage":
            return 200, {}, {"ok": True, "channel": params.get("channel"), "ts": ts}
        if method == "chat.update":
            return 200, {}, {"ok": True, "channel": params.get("channel"), "ts": params.get("ts")}
        if method == "files.getUploadURLExternal":
            file_id = f"F{self._ts}"
            return (
                200,
                {},
                {"ok": True, "upload_url": f"{self.url}upload/{file_id}", "file_id": file_id},
            )
        if method == "files.completeUploadExternal":
            return 200, {}, {"ok": True, "files": [{"id": "F1", "title": "NPO alignment"}]}
        if method == "usergroups.users.list":
            return 200, {}, {"ok": True, "users": ["UGROUP1"]}
        return 200, {}, {"ok": True}

    def of(self, method: str) -> list[dict[str, Any]]:
        with self._lock:
            return [p for m, p in self.calls if m == method]

    def last_received(self, method: str) -> float:
        """When the latest call of ``method`` arrived (``time.perf_counter()``)."""
        with self._lock:
            return next(
                t
                for (m, _), t in zip(reversed(self.calls), reversed(self.received_at), strict=True)
                if m == method
            )

    def wait_for(self, method: str, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.of(method)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"expected {count} {method} call(s), got {self.of(method)}")


@contextmanager
def fake_slack() -> Iterator[FakeSlackAPI]:
    api = FakeSlackAPI()
    try:
        yield api
    finally:
        api.close()


def signed_headers(
    secret: str, body: str, content_type: str, age_s: int = 0
) -> dict[str, str | Sequence[str]]:
    timestamp = str(int(time.time()) - age_s)
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body) or ""
    return {
        "content-type": [content_type],
        "x-slack-request-timestamp": [timestamp],
        "x-slack-signature": [signature],
    }


def event_body(event: dict[str, Any], event_id: str) -> str:
    """An Events API delivery (``event_callback``) of ``event``."""
    return json.dumps(
        {
            "token": "x",
            "team_id": "T1",
            "api_app_id": "A1",
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
            "event": event,
        }
    )


def override_submission_payload(private_metadata: str, user: str, reason: str) -> dict[str, Any]:
    """A ``view_submission`` of the override modal: ``user`` gave ``reason``."""
    return {
        "type": "view_submission",
        "user": {"id": user},
        "team": {"id": "T1"},
        "api_app_id": "A1",
        "token": "x",
        "trigger_id": "t",
        "view": {
            "id": "V1",
            "type": "modal",
            "callback_id": "npo_override_modal",
            "private_metadata": private_metadata,
            "state": {
                "values": {"reason": {"reason": {"type": "plain_text_input", "value": reason}}}
            },
        },
    }


def button_payload(
    action_id: str, value: str, user: str, channel: str, message_ts: str
) -> dict[str, Any]:
    """A ``block_actions`` payload: ``user`` clicked a button of the message at ``message_ts``."""
    return {
        "type": "block_actions",
        "user": {"id": user},
        "trigger_id": f"trig{time.monotonic_ns()}",
        "team": {"id": "T1"},
        "api_app_id": "A1",
        "token": "x",
        "container": {"type": "message", "channel_id": channel, "message_ts": message_ts},
        "channel": {"id": channel},
        "message": {"ts": message_ts},
        "actions": [
            {
                "action_id": action_id,
                "block_id": "npo_feedback",
                "value": value,
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def form_body(payload: dict[str, Any]) -> str:
    """An interaction as Slack posts it: the JSON payload in a form field."""
    return "payload=" + urllib.parse.quote(json.dumps(payload))
