"""End to end with the real Alertmanager (Debian's prometheus-alertmanager): alerts posted to
its API reach the bot's webhook and a recommendation arrives at the fake Slack Web API."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.slack.test_alerts import TOKEN, server  # noqa: F401  (the bot's HTTP server fixture)
from tests.slack_fake import FakeSlackAPI

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(
    BINARY is None,
    reason="prometheus-alertmanager is not installed (apt-get install prometheus-alertmanager)",
)
def test_alertmanager_delivers_to_the_bot(server: tuple[str, FakeSlackAPI], tmp_path: Path) -> None:  # noqa: F811
    bot_url, api = server
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        "route:\n  receiver: npo\n  group_by: [alertname]\n  group_wait: 1s\n"
        "  group_interval: 1s\n  repeat_interval: 1h\n"
        "receivers:\n  - name: npo\n    webhook_configs:\n"
        f"      - url: {bot_url}/alertmanager\n        send_resolved: true\n"
        f"        http_config:\n          authorization:\n            credentials: {TOKEN}\n"
    )
    port = _free_port()
    log = (tmp_path / "am.log").open("w")
    proc = subprocess.Popen(
        [
            str(BINARY),
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/-/ready", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"alertmanager did not start: {(tmp_path / 'am.log').read_text()}")
                time.sleep(0.2)
        alerts = [
            {
                "labels": {
                    "alertname": "LinkErrors",
                    "team": "net",
                    "severity": "critical",
                    "redundancy": "2",
                    "instance": "leaf-3:9100",
                },
                "annotations": {"summary": "CRC errors rising", "description": "leaf-3 eth1/4"},
            }
        ]
        req = urllib.request.Request(
            f"{base}/api/v2/alerts",
            json.dumps(alerts).encode(),
            {"Content-Type": "application/json"},
        )
        urllib.request.urlopen(req, timeout=5).close()
        messages = api.wait_for("chat.postMessage", 2, timeout=30)
        root, rec = messages[0], messages[1]
        assert root["channel"] == "CNET" and "LinkErrors" in root["text"]
        assert rec["thread_ts"] and "Recommended playbook" in json.dumps(rec["blocks"])
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
