"""Alertmanager intake (webhook v4) through the real HTTP server and a fake Slack Web API."""

from __future__ import annotations

import datetime as dt
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sqlalchemy.engine import Engine

from bot.alerts.alertmanager import (
    AlertIntake,
    channel_for,
    parse_notification,
    parse_routes,
    wsgi_handler,
)
from bot.extraction.rules import extract_scenario
from bot.extraction.severity import normalise_severity
from bot.service import NPOService
from bot.settings import PROJECT_ROOT, Settings
from bot.slack.app import app_for, slack_context, web_client
from bot.slack.serve import http_server
from core.npo import NPOConfig, ThresholdMode
from core.rego import RegoPolicyEngine
from core.scenario import SEVERITIES
from tests.fakes import FakeHit, FakeRetriever
from tests.slack_fake import FakeSlackAPI, fake_slack

TOKEN = "am-secret"


def _alert(status: str, name: str, fingerprint: str, **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, **labels},
        "annotations": {
            "summary": "CRC errors rising",
            "description": "leaf-3 eth1/4 input errors",
        },
        "startsAt": "2026-11-25T03:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": fingerprint,
    }


def _notification(
    status: str, alerts: list[dict[str, Any]], group: str = '{}:{alertname="LinkErrors"}'
) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": group,
        "status": status,
        "receiver": "npo",
        "groupLabels": {"alertname": "LinkErrors"},
        "commonLabels": {"alertname": "LinkErrors", "team": "net"},
        "commonAnnotations": {},
        "externalURL": "http://am",
        "alerts": alerts,
    }


@pytest.fixture
def server(engine: Engine, rego_engine: RegoPolicyEngine) -> Iterator[tuple[str, FakeSlackAPI]]:
    with fake_slack() as api:
        settings = Settings.model_validate(
            {"slack_bot_token": "xoxb", "slack_signing_secret": "s", "slack_api_url": api.url}
        )
        service = NPOService(
            engine,
            FakeRetriever([FakeHit("link-optic", 0.85, "replace_optic")]),
            rego_engine,
            NPOConfig(threshold_mode=ThresholdMode.FIXED, fixed_threshold=0.7),
            np.random.default_rng(0),
            clock=lambda: dt.datetime(2026, 11, 25, 3, tzinfo=dt.UTC),
        )
        client = web_client(settings)
        ctx = slack_context(settings, service, lambda pb: [], lambda pb: None, client)
        intake = AlertIntake(ctx, client, parse_routes("team=net:CNET"), "CDEFAULT")
        srv = http_server(
            app_for(settings, ctx, client), "127.0.0.1", 0, None, wsgi_handler(intake, TOKEN)
        )
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{srv.server_port}", api
        finally:
            srv.shutdown()
            srv.server_close()


def _post(url: str, body: object, token: str | None = TOKEN) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"{url}/alertmanager", data, headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_group_is_one_thread_and_repeats_do_not_recommend_again(
    server: tuple[str, FakeSlackAPI],
) -> None:
    url, api = server
    firing = _notification(
        "firing",
        [
            _alert(
                "firing",
                "LinkErrors",
                "fp1",
                team="net",
                severity="critical",
                redundancy="2",
                instance="leaf-3:9100",
            )
        ],
    )
    assert _post(url, firing) == (200, {"recommended": 1, "repeated": 0, "resolved": 0})
    root, rec = api.of("chat.postMessage")
    assert root["channel"] == "CNET" and "LinkErrors" in root["text"]
    assert rec["channel"] == "CNET" and rec["thread_ts"] == "1700000001.000100"
    assert "Recommended playbook" in json.dumps(rec["blocks"])

    assert _post(url, firing) == (200, {"recommended": 0, "repeated": 1, "resolved": 0})  # repeat
    second = _notification(
        "firing",
        [
            _alert("firing", "LinkErrors", "fp1", team="net"),
            _alert("firing", "LinkErrors", "fp2", team="net", instance="leaf-4:9100"),
        ],
    )
    assert _post(url, second) == (200, {"recommended": 1, "repeated": 1, "resolved": 0})
    resolved = _notification(
        "resolved",
        [_alert("resolved", "LinkErrors", "fp1"), _alert("resolved", "LinkErrors", "fp2")],
    )
    assert _post(url, resolved) == (200, {"recommended": 0, "repeated": 0, "resolved": 2})
    messages = api.of("chat.postMessage")
    assert len([m for m in messages if "thread_ts" not in m]) == 1  # one root for the group
    assert all(m["thread_ts"] == "1700000001.000100" for m in messages if "thread_ts" in m)


@pytest.mark.parametrize(
    ("body", "token", "status", "message"),
    [
        (_notification("firing", []), "wrong", 401, "bearer"),
        (_notification("firing", []), None, 401, "bearer"),
        (b"{not json", TOKEN, 400, "Expecting"),
        ({"version": "3", "groupKey": "g", "alerts": []}, TOKEN, 400, "version"),
        ({"version": "4", "alerts": []}, TOKEN, 400, "groupKey"),
        (
            {"version": "4", "groupKey": "g", "alerts": [{"status": "maybe"}]},
            TOKEN,
            400,
            "alerts[0].status",
        ),
    ],
)
def test_bad_requests_are_refused_and_change_nothing(
    server: tuple[str, FakeSlackAPI], body: object, token: str | None, status: int, message: str
) -> None:
    url, api = server
    code, answer = _post(url, body, token)
    assert code == status and message in answer["error"]
    assert api.of("chat.postMessage") == []


def test_routes() -> None:
    routes = parse_routes("team=net:CNET, severity=critical:CCRIT")
    assert channel_for({"team": "db", "severity": "critical"}, routes, "CDEF") == "CCRIT"
    assert channel_for({"team": "net", "severity": "critical"}, routes, "CDEF") == "CNET"
    assert channel_for({}, routes, "CDEF") == "CDEF"
    with pytest.raises(ValueError, match="NPO_ALERT_ROUTES"):
        parse_routes("team:CNET")


SEVERITY_TABLE = {
    "low": ("info", "informational", "none", "ok", "low"),
    "medium": ("warning", "warn", "minor", "medium", "moderate"),
    "high": ("error", "major", "high", "page"),
    "critical": ("critical", "crit", "fatal", "emergency", "disaster", "p1"),
}


def test_every_severity_word_maps_to_one_of_the_four_levels() -> None:
    assert set(SEVERITY_TABLE) == set(SEVERITIES)
    for level, words in SEVERITY_TABLE.items():
        for word in words:
            assert normalise_severity(word) == level, word
            assert normalise_severity(f" {word.upper()} ") == level, word
    for unknown in ("", "bogus", "sev2", "warning!"):
        assert normalise_severity(unknown) == "medium"


def test_a_severity_label_in_incident_text_is_normalised() -> None:
    now = dt.datetime(2026, 11, 25, 3, tzinfo=dt.UTC)
    assert extract_scenario("link down severity=warning", now).severity == "medium"
    assert extract_scenario("link down severity=P1", now).severity == "critical"
    assert extract_scenario("link down severity=info", now).severity == "low"


def test_a_malformed_alert_is_rejected_alone() -> None:
    note = parse_notification(
        _notification(
            "firing",
            [
                _alert("firing", "A", "fp1"),
                {"status": "firing", "labels": {"alertname": "B"}, "annotations": "no"},
                _alert("firing", "C", "fp3"),
            ],
        )
    )
    assert [a.index for a in note.alerts] == [0, 2]
    assert [(r.index, r.name) for r in note.rejected] == [(1, "alerts[1] (B)")]
    assert "alerts[1].annotations" in note.rejected[0].error


def test_compose_never_passes_an_empty_alertmanager_token() -> None:
    import yaml

    compose = yaml.safe_load((PROJECT_ROOT / "deploy" / "compose.yaml").read_text())
    token = compose["services"]["npo"]["environment"].get("NPO_ALERTMANAGER_TOKEN")
    assert token is None or ":-}" not in str(token)  # unset or required, never defaulted empty
