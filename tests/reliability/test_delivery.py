"""Reliability: retried and duplicated deliveries, Web API failures, malformed payloads."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_bolt import App, BoltRequest
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from bot.db.engine import make_engine
from bot.db.models import Feedback, Recommendation
from bot.service import NPOService
from bot.settings import Settings
from bot.slack import translate
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

SECRET = "rel-secret"
TEXT = "<@UBOT> CRC errors on leaf-1:eth1/3 redundancy=2 in maintenance window"


@pytest.fixture
def slack() -> Iterator[FakeSlackAPI]:
    with fake_slack() as api:
        yield api


def _instance(
    api: FakeSlackAPI, engine: Engine, rego_engine: RegoPolicyEngine, incident_channels: str = ""
) -> App:
    """One bot replica: the real Bolt app over the service, against the fake Web API."""
    return create_app(
        replica_settings(api, incident_channels),
        replica_service(engine, rego_engine),
        lambda pb: [],
        lambda pb: None,
    )


def replica_service(engine: Engine, rego_engine: RegoPolicyEngine) -> NPOService:
    return NPOService(
        engine,
        FakeRetriever([FakeHit("link-optic", 0.85, "replace_optic")]),
        rego_engine,
        NPOConfig(threshold_mode=ThresholdMode.FIXED, fixed_threshold=0.7),
        np.random.default_rng(0),
    )


def replica_settings(api: FakeSlackAPI, incident_channels: str = "") -> Settings:
    return Settings.model_validate(
        {
            "slack_bot_token": "xoxb",
            "slack_signing_secret": SECRET,
            "slack_api_url": api.url,
            "incident_channels": incident_channels,
        }
    )


def _send(app: App, body: str, retry: int = 0, content_type: str = "application/json") -> int:
    headers: dict[str, Any] = dict(signed_headers(SECRET, body, content_type))
    if retry:
        headers["x-slack-retry-num"] = str(retry)
        headers["x-slack-retry-reason"] = "http_timeout"
    return app.dispatch(BoltRequest(body=body, headers=headers)).status


def _count(engine: Engine, model: type) -> int:
    with Session(engine) as s:
        return int(s.exec(select(func.count()).select_from(model)).one())


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_every_event_delivered_three_times_to_two_instances_is_stored_once(
    slack: FakeSlackAPI, engine: Engine, rego_engine: RegoPolicyEngine, db_url: str
) -> None:
    second_engine = make_engine(db_url)
    apps = [_instance(slack, engine, rego_engine), _instance(slack, second_engine, rego_engine)]
    events = 10
    for i in range(events):
        mention = {"type": "app_mention", "user": "U1", "text": TEXT, "ts": f"{100 + i}.0"}
        body = event_body({**mention, "channel": "C1"}, f"EvR{i}")
        for retry in range(3):
            for app in apps:
                assert _send(app, body, retry) == 200
    slack.wait_for("chat.postMessage", events)
    time.sleep(1.0)  # let any stray duplicate finish
    assert len(slack.of("chat.postMessage")) == events
    assert _count(engine, Recommendation) == events
    # feedback: each click delivered to both instances, three times
    recs = [r.id for r in Session(engine).exec(select(Recommendation)).all()]
    for rec_id in recs:
        body = form_body(button_payload("npo_like", rec_id, "U9", "C1", "1.0"))
        for _ in range(3):
            for app in apps:
                _send(app, body, content_type="application/x-www-form-urlencoded")
    deadline = time.monotonic() + 20
    while _count(engine, Feedback) < events and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    assert _count(engine, Feedback) == events
    second_engine.dispose()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_web_api_failures_are_retried_and_the_recommendation_lands_once(
    slack: FakeSlackAPI, engine: Engine, rego_engine: RegoPolicyEngine
) -> None:
    app = _instance(slack, engine, rego_engine)
    slack.fail_next("chat.postMessage", 429, {"Retry-After": "1"})
    slack.fail_next("chat.postMessage", 500)
    slack.fail_next("chat.postMessage", 503)
    body = json.dumps(
        {
            "type": "event_callback",
            "team_id": "T1",
            "api_app_id": "A1",
            "event_id": "EvFail",
            "event_time": int(time.time()),
            "event": {
                "type": "app_mention",
                "user": "U1",
                "text": TEXT,
                "ts": "5.0",
                "channel": "C1",
            },
        }
    )
    assert _send(app, body) == 200
    slack.wait_for("chat.postMessage", 1, timeout=30)
    time.sleep(0.5)
    assert len(slack.of("chat.postMessage")) == 1
    assert _count(engine, Recommendation) == 1


payloads = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads)
def test_translation_never_crashes_on_malformed_payloads(payload: object) -> None:
    """Every translator either returns our type or raises PayloadError naming the field."""
    for fn in (
        translate.incident_from_event,
        translate.action_ref,
        translate.override_submission,
        translate.reaction_ref,
        translate.draft_from_submission,
    ):
        try:
            fn(payload)  # type: ignore[arg-type]
        except translate.PayloadError:
            pass
        except (AttributeError, TypeError) as exc:
            if not isinstance(payload, dict):
                continue  # not a mapping at all: Bolt never hands us one
            raise AssertionError(f"{fn.__name__} crashed on {payload!r}: {exc}") from exc
