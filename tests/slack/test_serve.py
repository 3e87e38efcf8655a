"""HTTP mode: the real server (waitress) on 127.0.0.1 with /healthz and /slack/events."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from slack_bolt import App
from sqlalchemy.engine import Engine

from bot.slack.serve import http_server
from tests.slack_fake import signed_headers

SECRET = "s3cret"


@pytest.fixture
def base_url() -> Iterator[str]:
    app = App(signing_secret=SECRET, token="xoxb-t", token_verification_enabled=False)
    server = http_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_healthz(base_url: str) -> None:
    with urllib.request.urlopen(f"{base_url}/healthz", timeout=5) as resp:
        assert resp.status == 200
        assert json.load(resp) == {"ok": True}


def test_url_verification_is_signed_and_answered(base_url: str) -> None:
    body = json.dumps({"type": "url_verification", "challenge": "abc123", "token": "x"})
    headers = {k: str(v[0]) for k, v in signed_headers(SECRET, body, "application/json").items()}
    req = urllib.request.Request(f"{base_url}/slack/events", body.encode(), headers, method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert json.load(resp)["challenge"] == "abc123"
    bad = urllib.request.Request(
        f"{base_url}/slack/events",
        body.encode(),
        {**headers, "x-slack-signature": "v0=bad"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(bad, timeout=5)
    assert info.value.code == 401


def test_after_stop_accepting_new_connections_are_refused() -> None:
    app = App(signing_secret=SECRET, token="xoxb-t", token_verification_enabled=False)
    server = http_server(app, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        urllib.request.urlopen(f"{url}/healthz", timeout=5).close()
        server.stop_accepting()
        with pytest.raises(urllib.error.URLError) as info:
            urllib.request.urlopen(f"{url}/healthz", timeout=5)
        assert isinstance(info.value.reason, ConnectionRefusedError)
        assert server.drain(1) == []  # nothing was in flight
    finally:
        server.shutdown()


def test_shutdown_completes_when_the_loop_can_no_longer_be_woken() -> None:
    """The event loop's wake-up pipe closed under it (it closes with the loop's map):
    shutting down still closes the listener and every connection, from the caller."""
    app = App(signing_secret=SECRET, token="xoxb-t", token_verification_enabled=False)
    server = http_server(app, "127.0.0.1", 0)
    loop = threading.Thread(target=server.serve_forever, daemon=True)
    loop.start()
    url = f"http://127.0.0.1:{server.server_port}"
    urllib.request.urlopen(f"{url}/healthz", timeout=5).close()
    waitress: Any = server._server  # the pipe is waitress's: no public way to close it
    closed = threading.Event()

    def close_the_pipe() -> None:  # on the loop's thread, as waitress closes it
        waitress.trigger.close()
        closed.set()

    waitress.trigger.pull_trigger(close_the_pipe)
    assert closed.wait(5)
    assert server.shutdown(grace=1) == []
    with pytest.raises(urllib.error.URLError) as info:
        urllib.request.urlopen(f"{url}/healthz", timeout=5)
    assert isinstance(info.value.reason, ConnectionRefusedError)
    loop.join(5)
    assert not loop.is_alive()  # its map is empty: the loop has ended


def test_unknown_paths_are_404(base_url: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{base_url}/nope", timeout=5)
    assert info.value.code == 404


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_metrics_are_scraped_and_parse(engine: Engine) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from bot.reporting.metrics import Metrics

    app = App(signing_secret=SECRET, token="xoxb-t", token_verification_enabled=False)
    server = http_server(app, "127.0.0.1", 0, Metrics(engine))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        urllib.request.urlopen(f"{url}/healthz", timeout=5).close()
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "npo_decisions",
        "npo_feedback",
        "npo_spe_verdicts",
        "npo_retrains",
        "npo_alignment_loss",
        "npo_override_rate",
        "npo_http_request_seconds",
    ):
        assert name in families, name
    samples = families["npo_http_request_seconds"].samples
    assert any(
        s.labels.get("path") == "/healthz" and s.name.endswith("_count") and s.value == 1
        for s in samples
    )
