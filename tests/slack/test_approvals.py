"""Approvals and deferrals in Slack: the real Bolt app, signed requests, the fake Web API.

A needs-approval recommendation is posted awaiting a second engineer with Approve / Reject;
the requester and non-approvers get an ephemeral refusal (audited); an approval updates the
message in place into a recommendation with feedback buttons, once however often the click
arrives; a rejection asks for a reason and is stored as an override. A deferred one says
when it can proceed, and its outcome is posted in the thread once by two replicas."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from itertools import count
from typing import Any

import numpy as np
import pytest
from slack_bolt import App, BoltRequest, BoltResponse
from slack_sdk import WebClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bot.db.models import AuditEntry, Feedback, Recommendation
from bot.service import NPOService
from bot.service.deferrals import DeferralPolicy, Poster, run_due
from bot.settings import Settings
from bot.slack.app import app_for, slack_context
from bot.slack.flows import SlackContext
from bot.slack.follow_ups import deferral_poster
from core.npo import NPOConfig, ThresholdMode
from core.policy import Verdict
from tests.fakes import FakeHit, FakeRetriever, ScriptedSPE
from tests.slack_fake import (
    FakeSlackAPI,
    button_payload,
    event_body,
    fake_slack,
    form_body,
    override_submission_payload,
    signed_headers,
)

SECRET = "approvals-secret"
CHANNEL = "CINC"
TEXT = "<@UBOT> CRC errors on leaf-1:eth1/3 <b>&amp; redundancy=1"
NOW = dt.datetime(2026, 12, 3, 14, 5, tzinfo=dt.UTC)
_ids = count(1)


@pytest.fixture
def slack() -> Iterator[FakeSlackAPI]:
    with fake_slack() as api:
        yield api


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> dt.datetime:
        return self.now


def _service(engine: Engine, spe: ScriptedSPE, clock: Clock) -> NPOService:
    retriever = FakeRetriever(
        [FakeHit("link-drain", 0.9, "drain_link", playbook_title="Drain <it>")]
    )
    cfg = NPOConfig(threshold_mode=ThresholdMode.FIXED, fixed_threshold=0.7)
    policy = DeferralPolicy(None, dt.timedelta(minutes=30), max_attempts=2)
    return NPOService(
        engine, retriever, spe, cfg, np.random.default_rng(0), clock=clock, deferral=policy
    )


def _wired(api: FakeSlackAPI, service: NPOService, **extra: object) -> tuple[App, SlackContext]:
    settings = Settings.model_validate(
        {
            "slack_bot_token": "xoxb-test",
            "slack_signing_secret": SECRET,
            "slack_api_url": api.url,
            "incident_channels": (CHANNEL,),
            **extra,
        }
    )
    client = WebClient(token="xoxb-test", base_url=api.url)
    steps = {"link-drain": ["Shift traffic", "Drain the link"]}
    ctx = slack_context(settings, service, lambda pb: steps.get(pb, []), lambda pb: None, client)
    return app_for(settings, ctx, client), ctx


def _send(app: App, body: str, content_type: str) -> BoltResponse:
    return app.dispatch(BoltRequest(body=body, headers=signed_headers(SECRET, body, content_type)))


def _interaction(app: App, payload: dict[str, Any]) -> BoltResponse:
    return _send(app, form_body(payload), "application/x-www-form-urlencoded")


def _mention(app: App, api: FakeSlackAPI, user: str = "U0REQ1") -> dict[str, Any]:
    ts = f"{time.time():.6f}"
    event = {"type": "app_mention", "user": user, "text": TEXT, "ts": ts, "channel": CHANNEL}
    assert _send(app, event_body(event, f"Ev{next(_ids)}"), "application/json").status == 200
    return api.wait_for("chat.postMessage")[-1]


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = message["blocks"]
    return json.loads(blocks) if isinstance(blocks, str) else blocks  # type: ignore[no-any-return]


def _buttons(message: dict[str, Any]) -> dict[str, str]:
    """action_id → value of the message's buttons."""
    out = {}
    for block in _blocks(message):
        if block["type"] == "actions":
            out.update({e["action_id"]: e["value"] for e in block["elements"]})
    return out


def _message_ts(engine: Engine, rec_id: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with Session(engine) as s:
            rec = s.get(Recommendation, rec_id)
            if rec is not None and rec.message_ts:
                return rec.message_ts
        time.sleep(0.02)
    raise AssertionError("the message was never attached")


def _click(app: App, action_id: str, rec_id: str, user: str, ts: str) -> dict[str, Any]:
    payload = button_payload(action_id, rec_id, user, CHANNEL, ts)
    assert _interaction(app, payload).status == 200
    return payload


def _audit_actions(engine: Engine) -> list[tuple[str, str]]:
    with Session(engine) as s:
        return [(a.actor, a.action) for a in s.exec(select(AuditEntry)).all()]


def _settle(api: FakeSlackAPI, seconds: float = 0.5) -> None:
    """Lazy listeners run after the ack: give any (wrong) extra call the time to arrive."""
    time.sleep(seconds)


def test_approval_by_a_second_engineer_turns_the_message_into_a_recommendation(
    slack: FakeSlackAPI, engine: Engine
) -> None:
    svc = _service(engine, ScriptedSPE({"drain_link": Verdict.NEEDS_APPROVAL}), Clock())
    app, _ = _wired(slack, svc)
    message = _mention(app, slack)
    text = json.dumps(_blocks(message))
    assert "Awaiting a second engineer" in text and "Drain &lt;it&gt;" in text
    assert "Shift traffic" in text  # the steps of the candidate awaiting approval
    assert message["text"].startswith("Awaiting approval: Drain &lt;it&gt;")
    buttons = _buttons(message)
    assert set(buttons) == {"npo_approve_run", "npo_reject_run"}
    rec_id = buttons["npo_approve_run"]
    ts = _message_ts(engine, rec_id)

    _click(app, "npo_approve_run", rec_id, "U0REQ1", ts)  # the requester
    refusal = slack.wait_for("chat.postEphemeral")[0]
    assert refusal["user"] == "U0REQ1" and "second engineer" in refusal["text"]
    assert slack.of("chat.update") == []

    payload = _click(app, "npo_approve_run", rec_id, "U0SEC2", ts)
    update = slack.wait_for("chat.update")[0]
    assert update["ts"] == ts and update["channel"] == CHANNEL
    updated = json.dumps(_blocks(update))
    assert "Recommended playbook" in updated and "Approved by <@U0SEC2>" in updated
    assert set(_buttons(update)) == {"npo_like", "npo_override", "npo_neutral", "npo_skip"}
    assert _interaction(app, payload).status == 200  # Slack retries the same click
    _settle(slack)
    assert len(slack.of("chat.update")) == 1
    assert len(slack.of("chat.postEphemeral")) == 1  # the same engineer is not told again

    _click(app, "npo_like", rec_id, "U0OPS3", ts)  # feedback now works like on any recommendation
    liked = slack.wait_for("chat.update", 2)[-1]
    assert "Liked by <@U0OPS3>" in json.dumps(_blocks(liked))
    actions = _audit_actions(engine)
    assert ("U0REQ1", "approval:approve:refused") in actions and (
        "U0SEC2",
        "approval:approve",
    ) in actions


def test_reject_asks_why_and_stores_an_override(slack: FakeSlackAPI, engine: Engine) -> None:
    svc = _service(engine, ScriptedSPE({"drain_link": Verdict.NEEDS_APPROVAL}), Clock())
    app, _ = _wired(slack, svc)
    rec_id = _buttons(_mention(app, slack))["npo_reject_run"]
    ts = _message_ts(engine, rec_id)
    _click(app, "npo_reject_run", rec_id, "U0REQ1", ts)  # the requester: refused, no modal
    assert "second engineer" in slack.wait_for("chat.postEphemeral")[0]["text"]
    assert slack.of("views.open") == []
    _click(app, "npo_reject_run", rec_id, "U0SEC2", ts)
    view = slack.wait_for("views.open")[0]
    modal = json.loads(view["view"]) if isinstance(view["view"], str) else view["view"]
    assert modal["callback_id"] == "npo_reject_modal"
    submission = override_submission_payload(
        modal["private_metadata"], "U0SEC2", "last path <!here>"
    )
    submission["view"]["callback_id"] = "npo_reject_modal"
    empty = json.loads(json.dumps(submission))
    empty["view"]["state"]["values"]["reason"]["reason"]["value"] = " "
    refused = _interaction(app, empty)
    assert refused.status == 200 and "errors" in refused.body
    assert _interaction(app, submission).status == 200
    update = slack.wait_for("chat.update")[0]
    shown = json.dumps(_blocks(update))
    assert "Rejected by <@U0SEC2>: last path &lt;!here&gt;" in shown
    assert _buttons(update) == {}
    assert _interaction(app, submission).status == 200  # a retried submission
    _settle(slack)
    assert len(slack.of("chat.update")) == 1
    with Session(engine) as s:
        [vote] = s.exec(select(Feedback)).all()
        assert (vote.operator_id, vote.kind, vote.reason, vote.playbook_id) == (
            "U0SEC2",
            "override",
            "last path <!here>",
            "link-drain",
        )


def test_only_the_configured_approvers_may_approve(slack: FakeSlackAPI, engine: Engine) -> None:
    svc = _service(engine, ScriptedSPE({"drain_link": Verdict.NEEDS_APPROVAL}), Clock())
    app, _ = _wired(slack, svc, approver_users="U0APP9")
    rec_id = _buttons(_mention(app, slack))["npo_approve_run"]
    ts = _message_ts(engine, rec_id)
    _click(app, "npo_approve_run", rec_id, "U0SEC2", ts)
    refusal = slack.wait_for("chat.postEphemeral")[0]
    assert refusal["user"] == "U0SEC2" and "not one of the approvers" in refusal["text"]
    _click(app, "npo_approve_run", rec_id, "U0APP9", ts)
    assert "Approved by <@U0APP9>" in json.dumps(_blocks(slack.wait_for("chat.update")[0]))
    assert ("U0SEC2", "approval:approve:refused") in _audit_actions(engine)


def test_a_deferred_recommendation_says_when_and_two_replicas_post_the_outcome_once(
    slack: FakeSlackAPI, engine: Engine
) -> None:
    spe = ScriptedSPE({"drain_link": Verdict.DEFER})
    clock = Clock()
    first, second = _service(engine, spe, clock), _service(engine, spe, clock)
    app, ctx = _wired(slack, first)
    _, other_ctx = _wired(slack, second)
    message = _mention(app, slack)
    shown = json.dumps(_blocks(message))
    assert "Deferred: the safety policies say to wait" in shown
    assert "Can proceed: no maintenance window known: checked again Thu 14:35 UTC" in shown
    assert _buttons(message) == {}
    thread = message["thread_ts"]
    spe.verdicts.clear()  # by then the policies allow it
    clock.now = NOW + dt.timedelta(minutes=30)
    posters = [
        (first, deferral_poster(ctx, WebClient(base_url=slack.url))),
        (second, deferral_poster(other_ctx, WebClient(base_url=slack.url))),
    ]
    barrier = threading.Barrier(len(posters))
    counts: list[dict[str, int]] = []

    def replica(svc: NPOService, post: Poster) -> None:
        barrier.wait(10)
        counts.append(run_due(svc, svc.deferral, post))

    threads = [threading.Thread(target=replica, args=pair) for pair in posters]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(c["posted"] for c in counts) == [0, 1]
    for svc, post in posters:  # and later runs (a restart) find nothing left to post
        assert run_due(svc, svc.deferral, post)["posted"] == 0
    posts = slack.wait_for("chat.postMessage", 2)
    _settle(slack)
    assert len(slack.of("chat.postMessage")) == 2  # the first message and one outcome
    outcome = posts[1]
    assert outcome["thread_ts"] == thread and outcome["channel"] == CHANNEL
    blocks = json.dumps(_blocks(outcome))
    assert "Judged again with fresh context" in blocks and "Recommended playbook" in blocks
    assert "npo_like" in _buttons(outcome)
