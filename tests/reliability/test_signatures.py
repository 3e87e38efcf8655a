"""Forged, stale and unsigned requests through the production HTTP server: every one is
refused with 401 before any listener runs, and nothing is stored or posted. Each kind of
request is then sent genuinely signed, so the refusals are shown not to be an accident of
a request that would have been refused anyway."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from slack_sdk.signature import SignatureVerifier
from sqlalchemy.engine import Engine

from bot.alerts.alertmanager import AlertIntake, parse_routes, wsgi_handler
from bot.slack.app import app_for, slack_context, web_client
from bot.slack.serve import http_server
from core.rego import RegoPolicyEngine
from tests.fakes import row_counts
from tests.reliability.test_delivery import SECRET, TEXT, replica_service, replica_settings
from tests.slack.test_app import _rec_id, service_message_ts
from tests.slack_fake import FakeSlackAPI, button_payload, event_body, fake_slack, form_body

TOKEN = "am-token"
CHANNEL = "C1"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def _sign(body: str, timestamp: str, secret: str = SECRET) -> dict[str, str]:
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    return {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature or ""}


def _now() -> str:
    return str(int(time.time()))


@dataclass(frozen=True)
class Forgery:
    name: str
    headers: Callable[[str], dict[str, str]]  # body → the headers sent with it


FORGERIES = [
    Forgery("no signature headers", lambda body: {}),
    Forgery(
        "signature without timestamp",
        lambda body: {"X-Slack-Signature": _sign(body, _now())["X-Slack-Signature"]},
    ),
    Forgery("timestamp without signature", lambda body: {"X-Slack-Request-Timestamp": _now()}),
    Forgery("wrong secret", lambda body: _sign(body, _now(), "not-the-secret")),
    Forgery("signed a different body", lambda body: _sign(body + " ", _now())),
    Forgery("6 minutes old", lambda body: _sign(body, str(int(time.time()) - 6 * 60))),
    Forgery("6 minutes ahead", lambda body: _sign(body, str(int(time.time()) + 6 * 60))),
    Forgery(
        "old signature, fresh timestamp",
        lambda body: {
            **_sign(body, str(int(time.time()) - 6 * 60)),
            "X-Slack-Request-Timestamp": _now(),
        },
    ),
    Forgery(
        "unknown signature version",
        lambda body: {
            "X-Slack-Request-Timestamp": (ts := _now()),
            "X-Slack-Signature": "v1=" + _sign(body, ts)["X-Slack-Signature"].removeprefix("v0="),
        },
    ),
]


@dataclass
class Bot:
    url: str
    slack: FakeSlackAPI
    engine: Engine

    def post(self, path: str, body: str, content_type: str, headers: dict[str, str]) -> int:
        request = urllib.request.Request(
            self.url + path,
            body.encode(),
            {"Content-Type": content_type, **headers},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as refused:
            return refused.code

    def state(self) -> dict[str, Any]:
        """Every table's row count and every Web API call made so far."""
        return {"rows": row_counts(self.engine), "web_api_calls": len(self.slack.calls)}


@pytest.fixture
def bot(engine: Engine, rego_engine: RegoPolicyEngine) -> Iterator[Bot]:
    """One replica's production entry point (HTTP server, Bolt app, Alertmanager intake
    with a bearer token) on 127.0.0.1, against a fake Slack Web API."""
    with fake_slack() as api:
        settings = replica_settings(api).model_copy(update={"playbook_admins": ("U1",)})
        client = web_client(settings)
        service = replica_service(engine, rego_engine)
        text = {"link-optic": "# link-optic"}.get
        ctx = slack_context(settings, service, lambda pb: [], text, client)
        intake = AlertIntake(ctx, client, parse_routes(""), CHANNEL)
        server = http_server(
            app_for(settings, ctx, client), "127.0.0.1", 0, None, wsgi_handler(intake, TOKEN)
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield Bot(f"http://127.0.0.1:{server.server_port}", api, engine)
        finally:
            server.shutdown()
            server.server_close()


def _mention(event_id: str) -> str:
    event = {"type": "app_mention", "user": "U1", "text": TEXT, "ts": "1.0", "channel": CHANNEL}
    return event_body(event, event_id)


def _click(rec_id: str, message_ts: str) -> str:
    return form_body(button_payload("npo_like", rec_id, "U7", CHANNEL, message_ts))


def _pause() -> str:
    return urllib.parse.urlencode(
        {
            "command": "/npo",
            "text": "playbook pause link-optic",
            "user_id": "U1",
            "channel_id": CHANNEL,
            "team_id": "T1",
            "trigger_id": "trig1",
            "response_url": "http://127.0.0.1:9/unused",
        }
    )


def _alert() -> str:
    alert = {
        "status": "firing",
        "labels": {"alertname": "LinkErrors", "device": "leaf-1"},
        "annotations": {"summary": "CRC errors on leaf-1:eth1/3", "description": ""},
        "startsAt": "2026-11-25T03:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": "f1",
    }
    return json.dumps(
        {
            "version": "4",
            "groupKey": '{}:{alertname="LinkErrors"}',
            "status": "firing",
            "receiver": "npo",
            "groupLabels": {},
            "commonLabels": {},
            "commonAnnotations": {},
            "externalURL": "http://am",
            "alerts": [alert],
        }
    )


def _refuse_all(bot: Bot, body: str, content_type: str) -> int:
    """Send every forgery of ``body``; each must be a 401 that changes nothing."""
    before = bot.state()
    for forgery in FORGERIES:
        status = bot.post("/slack/events", body, content_type, forgery.headers(body))
        assert status == 401, f"{forgery.name}: answered {status}"
    time.sleep(0.3)  # a listener that ran anyway would have written or posted by now
    assert bot.state() == before
    return len(FORGERIES)


def _genuine(bot: Bot, body: str, content_type: str) -> int:
    return bot.post("/slack/events", body, content_type, _sign(body, _now()))


def test_forged_events_are_refused_and_the_genuine_one_is_handled(bot: Bot) -> None:
    body = _mention("EvSig1")
    _refuse_all(bot, body, JSON)
    assert bot.slack.of("chat.postMessage") == []
    assert _genuine(bot, body, JSON) == 200
    assert len(bot.slack.wait_for("chat.postMessage")) == 1
    assert bot.state()["rows"]["recommendation"] == 1


def test_forged_button_clicks_are_refused_and_the_genuine_one_is_stored(bot: Bot) -> None:
    assert _genuine(bot, _mention("EvSig2"), JSON) == 200
    rec_id = _rec_id(bot.slack.wait_for("chat.postMessage")[0])
    body = _click(rec_id, service_message_ts(bot.engine, rec_id))
    _refuse_all(bot, body, FORM)
    assert bot.state()["rows"]["feedback"] == 0
    assert _genuine(bot, body, FORM) == 200
    bot.slack.wait_for("chat.update")
    assert bot.state()["rows"]["feedback"] == 1


def test_forged_slash_commands_are_refused_and_the_genuine_one_pauses(bot: Bot) -> None:
    body = _pause()
    _refuse_all(bot, body, FORM)
    before = bot.state()["rows"]
    assert _genuine(bot, body, FORM) == 200
    after = bot.state()["rows"]
    assert after["audit_log"] == before["audit_log"] + 1  # the pause, with who and why


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"bearer {TOKEN}"],
)
def test_alerts_without_the_bearer_token_are_refused(bot: Bot, authorization: str | None) -> None:
    before = bot.state()
    headers = {} if authorization is None else {"Authorization": authorization}
    assert bot.post("/alertmanager", _alert(), JSON, headers) == 401
    time.sleep(0.2)
    assert bot.state() == before
    assert bot.post("/alertmanager", _alert(), JSON, {"Authorization": f"Bearer {TOKEN}"}) == 200
    assert bot.state()["rows"]["recommendation"] == 1
