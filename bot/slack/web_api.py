"""A Slack Web API client that keeps its HTTP connection open between calls.

slack_sdk's ``WebClient`` opens a new connection for every call (``urlopen``), so each
recommendation posted to slack.com pays a TCP and a TLS handshake. This client keeps one
connection per thread (an ``http.client`` connection is not thread-safe, and Bolt calls
from its listener pool) and opens a new one when the old one was closed by the server or
sat idle too long. Only the step that moves bytes is replaced: retries (429 Retry-After,
5xx, connection resets), parsing and errors stay slack_sdk's, because a failure surfaces
as the same exceptions ``urlopen`` raises.
"""

from __future__ import annotations

import http.client
import io
import select
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlsplit
from urllib.request import Request

from slack_sdk import WebClient

_Key = tuple[str, str, int]


@dataclass(slots=True)
class _Open:
    conn: http.client.HTTPConnection
    last_used: float


class KeepAliveWebClient(WebClient):
    """``WebClient`` with a kept-alive connection per thread and host.

    ``idle_s``: a connection unused for longer is closed rather than reused, well inside
    the idle timeout of Slack's edge, so a request is never sent on a connection the
    server is about to drop.
    """

    def __init__(self, *args: Any, idle_s: float = 30.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.idle_s = idle_s
        self._local = threading.local()

    def _perform_urllib_http_request_internal(self, url: str, req: Request) -> dict[str, Any]:
        parts = urlsplit(url)
        if self.proxy is not None or parts.scheme not in {"http", "https"} or not parts.hostname:
            return super()._perform_urllib_http_request_internal(url, req)
        key: _Key = (
            parts.scheme,
            parts.hostname,
            parts.port or (443 if parts.scheme == "https" else 80),
        )
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn = self._connection(key)
        try:
            conn.request("POST", target, body=req.data, headers=dict(req.header_items()))
            resp = conn.getresponse()
            body = resp.read()
        except BaseException:
            self._close(key)  # half-used: never reuse it
            raise
        if resp.will_close:
            self._close(key)
        else:
            self._pool()[key].last_used = time.monotonic()
        if not 200 <= resp.status < 300:  # as urlopen: slack_sdk's retry handlers read it
            raise HTTPError(url, resp.status, resp.reason, resp.headers, io.BytesIO(body))
        if resp.headers.get_content_type() == "application/gzip":
            return {"status": resp.status, "headers": resp.headers, "body": body}
        charset = resp.headers.get_content_charset() or "utf-8"
        return {"status": resp.status, "headers": resp.headers, "body": body.decode(charset)}

    def close_connections(self) -> None:
        """Close this thread's connections (others close with their threads)."""
        for key in list(self._pool()):
            self._close(key)

    def _pool(self) -> dict[_Key, _Open]:
        pool: dict[_Key, _Open] | None = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
        return pool

    def _connection(self, key: _Key) -> http.client.HTTPConnection:
        pool = self._pool()
        held = pool.get(key)
        if held is not None:
            if time.monotonic() - held.last_used <= self.idle_s and not _dropped(held.conn):
                return held.conn
            self._close(key)
        scheme, host, port = key
        conn: http.client.HTTPConnection
        if scheme == "https":
            context = self.ssl or ssl.create_default_context()
            conn = http.client.HTTPSConnection(host, port, timeout=self.timeout, context=context)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
        pool[key] = _Open(conn, time.monotonic())
        return conn

    def _close(self, key: _Key) -> None:
        held = self._pool().pop(key, None)
        if held is not None:
            held.conn.close()


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """True when the server closed the idle connection: an idle socket that is readable
    holds an end of file (or bytes nobody asked for), either way it is unusable."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        poller = select.poll()  # not select.select: it cannot watch a descriptor ≥ 1024
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True
