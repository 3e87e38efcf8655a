"""Scenario tests: the real Bolt app, signed requests, a fake Slack Web API on loopback."""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from itertools import count
from typing import Any

import numpy as np
import pytest
from slack_bolt import App, BoltRequest, BoltResponse
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from bot.db.models import Feedback, Recommendation
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
    override_submission_payload,
    signed_headers,
)

SECRET = "test-signing-secret"
CHANNEL = "CINC"
TEXT = "<@UBOT> CRC errors on leaf-1:eth1/3 redundancy=2 in maintenance window"
_ids = count(1)


@pytest.fixture
def slack() -> Iterator[FakeSlackAPI]:
    with fake_slack() as api:
        yield api


def _settings(api: FakeSlackAPI, **extra: object) -> Settings:
    values: dict[str, object] = {
        "slack_bot_token": "xoxb-test",
        "slack_signing_secret": SECRET,
        "slack_api_url": api.url,
        "incident_channels": (CHANNEL,),
        **extra,
    }
    return Settings.model_validate(values)


@pytest.fixture
def service(
    engine: Engine, rego_engine: RegoPolicyEngine, request: pytest.FixtureRequest
) -> NPOService:
    retriever = FakeRetriever(
        [FakeHit("link-optic", 0.85, "replace_optic"), FakeHit("link-drain", 0.6)]
    )
    tau = getattr(request, "param", 0.7)
    config = NPOConfig(threshold_mode=ThresholdMode.FIXED, fixed_threshold=tau)
    now = dt.datetime(2026, 11, 25, 3, tzinfo=dt.UTC)
    return NPOService(
        engine, retriever, rego_engine, config, np.random.default_rng(0), clock=lambda: now
    )


def _app(api: FakeSlackAPI, service: NPOService, **extra: object) -> App:
    steps = {"link-optic": ["Drain the link", "Clean the connectors", "Replace the optic"]}
    known = {"link-optic", "link-drain"}
    return create_app(
        _settings(api, **extra),
        service,
        lambda pb: steps.get(pb, []),
        lambda pb: f"# {pb}" if pb in known else None,
    )


def _event(event: dict[str, Any], event_id: str | None = None) -> str:
    return event_body(event, event_id or f"Ev{next(_ids)}")


def _send(
    app: App,
    body: str,
    content_type: str = "application/json",
    age_s: int = 0,
    extra_headers: dict[str, str | Sequence[str]] | None = None,
    secret: str = SECRET,
) -> BoltResponse:
    headers = signed_headers(secret, body, content_type, age_s)
    headers.update(extra_headers or {})
    return app.dispatch(BoltRequest(body=body, headers=headers))


def _interaction(app: App, payload: dict[str, Any]) -> BoltResponse:
    return _send(app, form_body(payload), "application/x-www-form-urlencoded")


def _command(app: App, api: FakeSlackAPI, text: str, user: str = "U1") -> BoltResponse:
    """A signed ``/npo <text>`` slash command."""
    body = urllib.parse.urlencode(
        {
            "command": "/npo",
            "text": text,
            "user_id": user,
            "channel_id": CHANNEL,
            "team_id": "T1",
            "trigger_id": f"trig{next(_ids)}",
            "response_url": api.url + "resp",
        }
    )
    return _send(app, body, "application/x-www-form-urlencoded")


def _mention(app: App, api: FakeSlackAPI, event_id: str | None = None) -> dict[str, Any]:
    ts = f"{time.time():.6f}"
    event = {"type": "app_mention", "user": "U1", "text": TEXT, "ts": ts, "channel": CHANNEL}
    assert _send(app, _event(event, event_id)).status == 200
    return api.wait_for("chat.postMessage")[-1]


def _button(action_id: str, value: str, user: str, message_ts: str) -> dict[str, Any]:
    return button_payload(action_id, value, user, CHANNEL, message_ts)


def _blocks_text(message: dict[str, Any]) -> str:
    blocks = message["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    return json.dumps(blocks)


def _count(engine: Engine, model: type) -> int:
    with Session(engine) as s:
        return int(s.exec(select(func.count()).select_from(model)).one())


def _rec_id(message: dict[str, Any]) -> str:
    blocks = (
        json.loads(message["blocks"]) if isinstance(message["blocks"], str) else message["blocks"]
    )
    actions = next(b for b in blocks if b["type"] == "actions")
    return str(actions["elements"][0]["value"])


def test_a_mention_gets_an_explained_recommendation_in_the_thread(
    slack: FakeSlackAPI, service: NPOService, engine: Engine
) -> None:
    message = _mention(_app(slack, service), slack)
    assert message["channel"] == CHANNEL and message["thread_ts"]
    text = _blocks_text(message)
    for part in (
        "Recommended playbook",
        "Key steps",
        "Clean the connectors",
        "Explanation trace",
        "Supporting facts",
        "score *0.85* vs",
        "Threshold",
        "Policy",
        "Compliant",
        "allow by the safety policies",  # the (template) summary
    ):
        assert part in text, part
    assert all(label in text for label in ("Like", "Override", "Neutral", "Skip"))
    rec_id = _rec_id(message)
    assert service_message_ts(engine, rec_id)  # the message is linked to its recommendation
    with Session(engine) as s:
        rec = s.exec(select(Recommendation)).one()
        assert rec.id == rec_id and rec.playbook_id == "link-optic"


def test_like_button_is_stored_and_the_message_updated_in_place(
    slack: FakeSlackAPI, service: NPOService, engine: Engine
) -> None:
    app = _app(slack, service)
    rec_id = _rec_id(_mention(app, slack))
    ts = service_message_ts(engine, rec_id)
    assert _interaction(app, _button("npo_like", rec_id, "U07OPS", ts)).status == 200
    update = slack.wait_for("chat.update")[-1]
    assert update["ts"] == ts
    assert "Liked by <@U07OPS>" in _blocks_text(update)
    assert '"type": "actions"' not in _blocks_text(update)  # buttons replaced
    assert service.stats()[0].likes == 1


def service_message_ts(engine: Engine, rec_id: str) -> str:
    """The posted message's ts, once the lazy listener has stored it."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with Session(engine) as s:
            rec = s.get(Recommendation, rec_id)
            if rec is not None and rec.message_ts:
                return rec.message_ts
        time.sleep(0.02)
    raise AssertionError(f"recommendation {rec_id} was never attached to its message")


def test_override_opens_a_modal_and_the_reason_is_stored(
    slack: FakeSlackAPI, service: NPOService, engine: Engine
) -> None:
    app = _app(slack, service)
    rec_id = _rec_id(_mention(app, slack))
    ts = service_message_ts(engine, rec_id)
    assert _interaction(app, _button("npo_override", rec_id, "U07OPS", ts)).status == 200
    view = slack.wait_for("views.open")[0]
    modal = json.loads(view["view"]) if isinstance(view["view"], str) else view["view"]
    assert modal["callback_id"] == "npo_override_modal"
    submission = override_submission_payload(modal["private_metadata"], "U07OPS", "wrong card")
    empty = json.loads(json.dumps(submission))
    empty["view"]["state"]["values"]["reason"]["reason"]["value"] = "  "
    refused = _interaction(app, empty)
    assert refused.status == 200 and "errors" in refused.body
    assert _interaction(app, submission).status == 200
    update = slack.wait_for("chat.update")[-1]
    assert "Overridden by <@U07OPS>: wrong card" in _blocks_text(update)
    with Session(engine) as s:
        fb = s.exec(select(Feedback)).one()
        assert (fb.kind, fb.reason, fb.source) == ("override", "wrong card", "modal")


def test_reactions_are_feedback_and_removing_them_withdraws_it(
    slack: FakeSlackAPI, service: NPOService, engine: Engine
) -> None:
    app = _app(slack, service)
    rec_id = _rec_id(_mention(app, slack))
    ts = service_message_ts(engine, rec_id)
    item = {"type": "message", "channel": CHANNEL, "ts": ts}
    _send(app, _event({"type": "reaction_added", "user": "U8", "reaction": "+1", "item": item}))
    slack.wait_for("chat.update", 1)
    assert service.stats()[0].likes == 1
    _send(app, _event({"type": "reaction_removed", "user": "U8", "reaction": "+1", "item": item}))
    slack.wait_for("chat.update", 2)
    assert service.stats() == []
    _send(app, _event({"type": "reaction_added", "user": "U8", "reaction": "tada", "item": item}))
    time.sleep(0.3)
    assert service.stats() == []  # unmapped emoji: no feedback


def test_retried_events_and_double_clicks_count_once(
    slack: FakeSlackAPI, service: NPOService, engine: Engine
) -> None:
    app = _app(slack, service)
    ts = f"{time.time():.6f}"
    body = _event(
        {"type": "app_mention", "user": "U1", "text": TEXT, "ts": ts, "channel": CHANNEL}, "EvRETRY"
    )
    for retry in range(3):
        headers: dict[str, str | Sequence[str]] = (
            {"x-slack-retry-num": str(retry), "x-slack-retry-reason": "http_timeout"}
            if retry
            else {}
        )
        assert _send(app, body, extra_headers=headers).status == 200
    slack.wait_for("chat.postMessage")
    time.sleep(0.5)
    assert len(slack.of("chat.postMessage")) == 1
    assert _count(engine, Recommendation) == 1
    rec_id = _rec_id(slack.of("chat.postMessage")[0])
    msg_ts = service_message_ts(engine, rec_id)
    for _ in range(2):
        _interaction(app, _button("npo_like", rec_id, "U7", msg_ts))
    slack.wait_for("chat.update", 2)
    assert _count(engine, Feedback) == 1
    assert service.stats()[0].decisions == 1


@pytest.mark.parametrize(("secret", "age_s"), [("wrong-secret", 0), (SECRET, 6 * 60)])
def test_bad_or_stale_signatures_are_rejected_without_state_change(
    slack: FakeSlackAPI, service: NPOService, engine: Engine, secret: str, age_s: int
) -> None:
    app = _app(slack, service)
    event = {"type": "app_mention", "user": "U1", "text": TEXT, "ts": "1.0", "channel": CHANNEL}
    response = _send(app, _event(event), secret=secret, age_s=age_s)
    assert response.status == 401
    missing = app.dispatch(
        BoltRequest(body=_event(event), headers={"content-type": ["application/json"]})
    )
    assert missing.status == 401
    time.sleep(0.3)
    assert slack.of("chat.postMessage") == []
    assert _count(engine, Recommendation) == 0


def test_an_unauthorised_override_is_refused_and_changes_nothing(
    slack: FakeSlackAPI, service: NPOService, engine: Engine
) -> None:
    app = _app(slack, service, feedback_users=("U7", "U9"), override_users=("U9",))
    rec_id = _rec_id(_mention(app, slack))
    ts = service_message_ts(engine, rec_id)
    _interaction(app, _button("npo_override", rec_id, "U7", ts))
    refusal = slack.wait_for("chat.postEphemeral")[0]
    assert refusal["user"] == "U7" and "not allowed" in refusal["text"]
    _interaction(app, _button("npo_like", rec_id, "U666", ts))
    slack.wait_for("chat.postEphemeral", 2)
    assert slack.of("views.open") == []
    assert _count(engine, Feedback) == 0


def test_help_and_stats_are_ephemeral(slack: FakeSlackAPI, service: NPOService) -> None:
    app = _app(slack, service)

    def command(text: str) -> BoltResponse:
        return _command(app, slack, text)

    help_reply = json.loads(command("help").body)
    assert help_reply["response_type"] == "ephemeral"
    for usage in ("recommend &lt;incident&gt;", "stats [playbook]", "playbook &lt;id&gt;"):
        assert usage in help_reply["text"]  # escaped: Slack would read <id> as a link
    assert "prefs verbosity" in help_reply["text"]
    divergence = json.loads(command("stats divergence").body)["text"]
    assert "policy–practice divergence" in divergence
    stats_text = json.loads(command("stats").body)["text"]
    assert stats_text.startswith("```playbook") and "threshold arms" in stats_text
    assert json.loads(command("prefs verbosity brief").body)["text"].endswith("brief for you.")
    assert (
        json.loads(command("recommend CRC errors on leaf-2").body)["response_type"] == "ephemeral"
    )
    posted = slack.wait_for("chat.postMessage")[0]
    assert '"Details"' in _blocks_text(posted)  # U1 now sees the brief form


def test_messages_in_incident_channels_are_incidents(
    slack: FakeSlackAPI, service: NPOService
) -> None:
    app = _app(slack, service)
    plain = {"type": "message", "user": "U1", "text": "CRC errors on leaf-9:eth2", "ts": "5.1"}
    _send(app, _event({**plain, "channel": "COTHER"}))
    _send(app, _event({**plain, "channel": CHANNEL, "subtype": "message_changed"}))
    _send(app, _event({**plain, "channel": CHANNEL}))
    posted = slack.wait_for("chat.postMessage")
    time.sleep(0.3)
    assert len(slack.of("chat.postMessage")) == 1
    assert posted[0]["thread_ts"] == "5.1"


@pytest.mark.parametrize("service", [0.9], indirect=True)
def test_an_abstention_lists_candidates_that_can_be_liked(
    slack: FakeSlackAPI, service: NPOService, engine: Engine
) -> None:
    app = _app(slack, service)
    message = _mention(app, slack)
    text = _blocks_text(message)
    assert "not confident enough" in text and "This one" in text
    blocks = (
        json.loads(message["blocks"]) if isinstance(message["blocks"], str) else message["blocks"]
    )
    button = next(
        b["accessory"] for b in blocks if "accessory" in b and "link-drain" in b["text"]["text"]
    )
    rec_id, _, playbook = button["value"].partition("|")
    ts = service_message_ts(engine, rec_id)
    _interaction(app, _button("npo_like_candidate", button["value"], "U5", ts))
    slack.wait_for("chat.update")
    [row] = service.stats()
    assert (row.playbook_id, row.likes) == (playbook, 1) == ("link-drain", 1)


def test_playbook_command_shows_a_playbook(slack: FakeSlackAPI, service: NPOService) -> None:
    app = _app(slack, service)
    reply = json.loads(_command(app, slack, "playbook link-optic").body)
    assert reply["response_type"] == "ephemeral"
    assert reply["text"] == "# link-optic"


def test_pause_and_resume_from_slack_need_playbook_admin_rights(
    slack: FakeSlackAPI, service: NPOService
) -> None:
    """Pausing changes what every operator is shown: override rights are not enough, and
    with no admins configured nobody may; unknown ids are refused."""
    nobody = _app(slack, service, override_users=("U1",))
    refusal = json.loads(_command(nobody, slack, "playbook pause link-optic", "U1").body)["text"]
    assert "not allowed" in refusal
    assert "NPO_PLAYBOOK_ADMINS" in refusal  # says which setting grants it
    app = _app(slack, service, override_users=("U1", "U2"), playbook_admins=("U1",))

    def command(user: str, text: str) -> str:
        return str(json.loads(_command(app, slack, text, user).body)["text"])

    assert "not allowed" in command("U2", "playbook pause link-optic")
    assert service.paused() == set()
    assert command("U1", "playbook pause no-such-playbook").startswith("No playbook")
    assert service.paused() == set()
    assert command("U1", "playbook pause link-optic") == "`link-optic` paused."
    assert service.paused() == {"link-optic"}
    assert command("U1", "playbook resume link-optic") == "`link-optic` resumed."
    assert service.paused() == set()


def test_stats_chart_is_uploaded(slack: FakeSlackAPI, service: NPOService) -> None:
    app = _app(slack, service)
    reply = json.loads(_command(app, slack, "stats chart").body)
    assert "Rendering" in reply["text"]
    done = slack.wait_for("files.completeUploadExternal")[0]
    assert done["channel_id"] == CHANNEL
    [upload] = slack.of("upload")
    assert int(upload["bytes"]) > 1000  # a real PNG went up
