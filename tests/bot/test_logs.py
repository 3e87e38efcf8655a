"""Logging an operator can use: one line per handled event with its ids, a warning with
the ids on every failure, plain or JSON lines; and secrets that never show."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import sys
import time
from collections.abc import Iterator
from itertools import count
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from slack_bolt import App, BoltRequest
from slack_sdk import WebClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bot.db.models import Recommendation
from bot.logs import CHATTY_LIBRARIES, configure_logging
from bot.service import NPOService
from bot.settings import Settings
from bot.slack.app import create_app
from core.npo import NPOConfig, ThresholdMode
from core.rego import RegoPolicyEngine
from tests.fakes import FakeHit, FakeRetriever
from tests.slack_fake import (
    FakeSlackAPI,
    button_payload,
    event_body,
    fake_slack,
    form_body,
    signed_headers,
)

SECRET = "logs-signing-secret"
CHANNEL = "CINC"
TEXT = "<@UBOT> CRC errors on leaf-1:eth1/3 redundancy=2 in maintenance window"
_ids = count(1)


class _Lines(logging.Handler):
    """Formats like the configured handler and keeps the lines."""

    def __init__(self, formatter: logging.Formatter | None) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def wait_for(self, *needles: str, timeout: float = 10.0) -> list[str]:
        """The lines, once each needle is in one of them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = list(self.lines)
            if all(any(n in line for line in lines) for n in needles):
                return lines
            time.sleep(0.02)
        missing = [n for n in needles if not any(n in line for line in self.lines)]
        raise AssertionError(f"no log line with {missing}; lines: {self.lines}")


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    chatty = {name: logging.getLogger(name).level for name in CHATTY_LIBRARIES}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in chatty.items():
        logging.getLogger(name).setLevel(old)


def _capture(fmt: str) -> _Lines:
    handler = configure_logging("INFO", fmt)
    lines = _Lines(handler.formatter)
    logging.getLogger().addHandler(lines)
    return lines


@pytest.fixture
def slack() -> Iterator[FakeSlackAPI]:
    with fake_slack() as api:
        yield api


@pytest.fixture
def service(engine: Engine, rego_engine: RegoPolicyEngine) -> NPOService:
    retriever = FakeRetriever(
        [FakeHit("link-optic", 0.85, "replace_optic"), FakeHit("link-drain", 0.6)]
    )
    now = dt.datetime(2026, 11, 25, 3, tzinfo=dt.UTC)
    config = NPOConfig(threshold_mode=ThresholdMode.FIXED, fixed_threshold=0.7)
    return NPOService(
        engine, retriever, rego_engine, config, np.random.default_rng(0), clock=lambda: now
    )


def _app(api: FakeSlackAPI, service: NPOService, client: WebClient | None = None) -> App:
    settings = Settings.model_validate(
        {"slack_bot_token": "xoxb-test", "slack_signing_secret": SECRET, "slack_api_url": api.url}
    )
    return create_app(settings, service, lambda pb: ["Replace the optic"], lambda pb: None, client)


def _send(app: App, body: str, content_type: str = "application/json") -> None:
    headers = signed_headers(SECRET, body, content_type)
    assert app.dispatch(BoltRequest(body=body, headers=headers)).status == 200


def _mention(app: App) -> str:
    """Dispatch a mention; its event id."""
    event_id = f"EvLog{next(_ids)}"
    ts = f"{time.time():.6f}"
    event = {"type": "app_mention", "user": "U1", "text": TEXT, "ts": ts, "channel": CHANNEL}
    _send(app, event_body(event, event_id))
    return event_id


def _click(app: App, action_id: str, rec_id: str, user: str, message_ts: str) -> str:
    """Click a feedback button; the click's event id (as the service stores it)."""
    payload = button_payload(action_id, rec_id, user, CHANNEL, message_ts)
    _send(app, form_body(payload), "application/x-www-form-urlencoded")
    return f"action:{rec_id}:{user}:{payload['actions'][0]['action_ts']}"


def _reaction(app: App, kind: str, message_ts: str, user: str = "U8") -> str:
    event_id = f"EvLog{next(_ids)}"
    item = {"type": "message", "channel": CHANNEL, "ts": message_ts}
    event = {"type": kind, "user": user, "reaction": "+1", "item": item}
    _send(app, event_body(event, event_id))
    return event_id


def _posted(engine: Engine, event_id: str) -> tuple[str, str]:
    """The recommendation of a mention and its message ts, once posted."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with Session(engine) as s:
            rec = s.exec(
                select(Recommendation).where(Recommendation.source_event_id == f"event:{event_id}")
            ).first()
            if rec is not None and rec.message_ts:
                return rec.id, rec.message_ts
        time.sleep(0.02)
    raise AssertionError(f"{event_id} was never posted")


def _line_with(lines: list[str], needle: str) -> str:
    found = [line for line in lines if needle in line]
    assert len(found) == 1, (needle, found)
    return found[0]


def test_each_handled_event_is_one_line_with_its_ids(
    slack: FakeSlackAPI, service: NPOService, engine: Engine, root_logging: None
) -> None:
    lines = _capture("plain")
    app = _app(slack, service)
    first, second = _mention(app), _mention(app)
    rec1, ts1 = _posted(engine, first)
    rec2, ts2 = _posted(engine, second)
    like = _click(app, "npo_like", rec1, "U7", ts1)
    lines_so_far = lines.wait_for(like)
    neutral = _click(app, "npo_neutral", rec2, "U7", ts2)
    added = _reaction(app, "reaction_added", ts2)
    lines.wait_for(neutral, added)
    removed = _reaction(app, "reaction_removed", ts2)
    lines_so_far = lines.wait_for(removed)

    posted = _line_with(lines_so_far, f"event_id=event:{first}")
    assert "recommendation posted" in posted and " INFO " in posted
    for field in (f"recommendation_id={rec1}", "outcome=recommend", "playbook=link-optic"):
        assert field in posted
    assert "latency_ms=" in posted
    assert f"recommendation_id={rec2}" in _line_with(lines_so_far, f"event_id=event:{second}")
    clicked = _line_with(lines_so_far, like)
    for field in (f"recommendation_id={rec1}", "kind=like", "status=stored", "latency_ms="):
        assert field in clicked
    assert "kind=neutral" in _line_with(lines_so_far, neutral)
    assert f"recommendation_id={rec2}" in _line_with(lines_so_far, f"event_id=event:{added}")
    withdrawn = _line_with(lines_so_far, f"event_id=event:{removed}")
    assert "withdraw" in withdrawn and "status=withdrawn" in withdrawn


def test_a_duplicate_delivery_is_logged_as_ignored(
    slack: FakeSlackAPI, service: NPOService, engine: Engine, root_logging: None
) -> None:
    lines = _capture("plain")
    app = _app(slack, service)
    event = {"type": "app_mention", "user": "U1", "text": TEXT, "ts": "1.0", "channel": CHANNEL}
    body = event_body(event, "EvDup")
    _send(app, body)
    _posted(engine, "EvDup")
    _send(app, body)  # Slack's retry
    found = lines.wait_for("duplicate delivery ignored")
    assert "event_id=event:EvDup" in _line_with(found, "duplicate delivery ignored")


def test_a_failed_post_is_a_warning_with_the_event_and_recommendation(
    slack: FakeSlackAPI, service: NPOService, engine: Engine, root_logging: None
) -> None:
    lines = _capture("plain")
    no_retries = WebClient(token="xoxb-test", base_url=slack.url)
    app = _app(slack, service, no_retries)
    slack.fail_next("chat.postMessage", 500)
    event_id = _mention(app)
    found = lines.wait_for("posting the recommendation failed")
    with Session(engine) as s:
        rec = s.exec(select(Recommendation)).one()
    warning = _line_with(found, "posting the recommendation failed")
    assert " WARNING " in warning
    assert f"event_id=event:{event_id}" in warning and f"recommendation_id={rec.id}" in warning
    assert "internal_error" in warning  # what Slack answered


def test_a_refused_user_and_an_unknown_recommendation_are_warnings(
    slack: FakeSlackAPI, engine: Engine, service: NPOService, root_logging: None
) -> None:
    lines = _capture("plain")
    settings = Settings.model_validate(
        {
            "slack_bot_token": "xoxb-test",
            "slack_signing_secret": SECRET,
            "slack_api_url": slack.url,
            "feedback_users": "U7",
        }
    )
    app = create_app(settings, service, lambda pb: [], lambda pb: None)
    refused = _click(app, "npo_like", "rec-x", "U9", "1.0")
    unknown = _click(app, "npo_like", "no-such-recommendation", "U7", "1.0")
    found = lines.wait_for(refused, unknown)
    refusal = _line_with(found, refused)
    assert " WARNING " in refusal and "refused" in refusal and "user=U9" in refusal
    missing = _line_with(found, unknown)
    assert " WARNING " in missing and "status=unknown_recommendation" in missing


def test_json_lines_parse_one_by_one(
    slack: FakeSlackAPI, service: NPOService, engine: Engine, root_logging: None
) -> None:
    lines = _capture("json")
    app = _app(slack, service)
    event_id = _mention(app)
    rec_id, ts = _posted(engine, event_id)
    click = _click(app, "npo_like", rec_id, "U7", ts)
    found = lines.wait_for(click)
    docs = [json.loads(line) for line in found]  # every line is one JSON object
    assert all({"ts", "level", "logger", "msg"} <= doc.keys() for doc in docs)
    posted = next(d for d in docs if d.get("event_id") == f"event:{event_id}")
    assert posted["recommendation_id"] == rec_id and posted["playbook"] == "link-optic"
    assert posted["level"] == "INFO" and posted["logger"] == "bot.slack.flows"
    assert isinstance(posted["latency_ms"], float)
    voted = next(d for d in docs if d.get("event_id") == click)
    assert (voted["kind"], voted["status"]) == ("like", "stored")


def test_configure_logging_writes_to_stderr_once(
    root_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    configure_logging("info", "plain")
    configure_logging("WARNING", "json")  # replaces the first handler
    log = logging.getLogger("npo.test")
    log.info("not shown")
    log.warning("shown", extra={"event_id": "Ev1", "note": 'a "quoted" value'})
    (line,) = err.getvalue().splitlines()
    assert json.loads(line)["event_id"] == "Ev1"
    assert logging.getLogger("apscheduler.scheduler").getEffectiveLevel() == logging.WARNING
    with pytest.raises(ValueError, match="plain or json"):
        configure_logging("INFO", "xml")


def test_plain_values_with_spaces_are_quoted(root_logging: None) -> None:
    lines = _capture("plain")
    logging.getLogger("npo.test").info("x", extra={"reason": "wrong card", "n": 3})
    assert lines.lines[-1].endswith('x reason="wrong card" n=3')


def test_logging_is_configured_from_settings_at_start(
    root_logging: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from bot.cli import commands as cli

    monkeypatch.setenv("NPO_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("NPO_LOG_FORMAT", "json")
    monkeypatch.setenv("NPO_DATA_DIR", str(tmp_path))
    assert cli.main(["policies", "check"]) == 0
    root = logging.getLogger()
    assert root.level == logging.DEBUG
    assert any(type(h.formatter).__name__ == "JsonFormatter" for h in root.handlers)
    monkeypatch.setenv("NPO_LOG_FORMAT", "xml")
    assert cli.main(["policies", "check"]) == 2  # refused with the field named


# -- secrets ------------------------------------------------------------------------------

SECRETS = {
    "slack_bot_token": "xoxb-very-secret-bot-token",
    "slack_signing_secret": "very-secret-signing-secret",
    "slack_app_token": "xapp-very-secret-app-token",
    "alertmanager_token": "very-secret-alertmanager-token",
}


def test_secrets_never_show_in_reprs_strings_or_validation_errors() -> None:
    settings = Settings.model_validate(SECRETS)
    shown = repr(settings) + str(settings) + repr(settings.model_dump())
    for value in SECRETS.values():
        assert value not in shown
    with pytest.raises(ValidationError) as caught:
        Settings.model_validate({**SECRETS, "prior_strength": "not a number"})
    for value in SECRETS.values():
        assert value not in str(caught.value)
    assert settings.slack_bot_token is not None
    assert settings.slack_bot_token.get_secret_value() == SECRETS["slack_bot_token"]


def test_secrets_are_read_from_their_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-env")
    monkeypatch.setenv("NPO_ALERTMANAGER_TOKEN", "am-env")
    settings = Settings()
    assert settings.slack_bot_token is not None and settings.alertmanager_token is not None
    assert settings.slack_bot_token.get_secret_value() == "xoxb-env"
    assert settings.alertmanager_token.get_secret_value() == "am-env"
    assert "xoxb-env" not in repr(settings)


def test_the_console_logs_each_incident_and_vote(service: NPOService, root_logging: None) -> None:
    from bot.console.chat import run_console

    lines = _capture("json")
    run_console(service, [TEXT, "like", "like no-such-playbook"], echo=lambda _: None)
    docs = [json.loads(line) for line in lines.lines if '"bot.console.chat"' in line]
    made, liked, refused = docs
    assert made["msg"] == "recommendation made" and made["playbook"] == "link-optic"
    assert liked["recommendation_id"] == made["recommendation_id"] == refused["recommendation_id"]
    assert (liked["status"], liked["level"]) == ("stored", "INFO")
    assert (refused["status"], refused["level"]) == ("not_a_candidate", "WARNING")
