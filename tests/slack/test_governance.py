"""Playbook governance in Slack: submit through the modal, review, approve by a non-author."""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from slack_bolt import App, BoltResponse
from sqlalchemy.engine import Engine

from bot.governance.library_sync import LibrarySync
from bot.governance.submissions import Governance
from bot.service import NPOService
from bot.settings import Settings
from bot.slack.app import create_app
from bot.slack.blocks import SUBMIT_FIELDS
from core.npo import NPOConfig
from core.rego import RegoPolicyEngine
from retrieval.playbook import Status, lint_folder
from tests.fakes import FakeRetriever
from tests.slack_fake import FakeSlackAPI, fake_slack, signed_headers

SECRET = "gov-secret"
REVIEW = "CREVIEW"
NOW = dt.datetime(2026, 11, 25, 9, tzinfo=dt.UTC)

FORM = {
    "id": "pdu-breaker-trip",
    "title": "PDU breaker tripped: move load and reset",
    "action": "reset_breaker",
    "risk": "medium",
    "blast_radius": "2",
    "components": "power, pdu",
    "fault_types": "breaker_trip",
    "symptoms": "Rack loses one power feed.",
    "diagnosis": "Check the PDU's breaker state.",
    "steps": "1. Confirm the servers run on the other feed.\n2. Reset the breaker.",
    "rollback": "Open the breaker again.",
}


@pytest.fixture
def slack() -> Iterator[FakeSlackAPI]:
    with fake_slack() as api:
        yield api


def _send(app: App, body: str) -> BoltResponse:
    from slack_bolt import BoltRequest

    headers = signed_headers(SECRET, body, "application/x-www-form-urlencoded")
    return app.dispatch(BoltRequest(body=body, headers=headers))


def _submission(values: dict[str, str], user: str) -> str:
    state = {
        name: {name: {"type": "plain_text_input", "value": values.get(name, "")}}
        for name, _, _ in SUBMIT_FIELDS
    }
    payload: dict[str, Any] = {
        "type": "view_submission",
        "user": {"id": user},
        "team": {"id": "T1"},
        "api_app_id": "A1",
        "token": "x",
        "trigger_id": "t",
        "view": {
            "id": "VS",
            "type": "modal",
            "callback_id": "npo_submit_playbook",
            "state": {"values": state},
        },
    }
    return "payload=" + urllib.parse.quote(json.dumps(payload))


def _click(action_id: str, value: str, user: str, ts: str) -> str:
    payload = {
        "type": "block_actions",
        "user": {"id": user},
        "trigger_id": "t",
        "team": {"id": "T1"},
        "api_app_id": "A1",
        "token": "x",
        "container": {"type": "message", "channel_id": REVIEW, "message_ts": ts},
        "actions": [{"action_id": action_id, "value": value, "type": "button", "action_ts": "1.1"}],
    }
    return "payload=" + urllib.parse.quote(json.dumps(payload))


def test_submit_review_and_approve(
    slack: FakeSlackAPI, engine: Engine, rego_engine: RegoPolicyEngine, tmp_path: Path
) -> None:
    approvals: list[int] = []
    sync = LibrarySync(engine, tmp_path / "approved", lambda: approvals.append(1))
    governance = Governance(engine, tmp_path / "approved", {"U02REV", "U3"}, sync.run, lambda: NOW)
    service = NPOService(
        engine, FakeRetriever([]), rego_engine, NPOConfig(), np.random.default_rng(0)
    )
    settings = Settings.model_validate(
        {
            "slack_bot_token": "xoxb",
            "slack_signing_secret": SECRET,
            "slack_api_url": slack.url,
            "review_channel": REVIEW,
        }
    )
    app = create_app(settings, service, lambda pb: [], lambda pb: None, governance=governance)

    command = urllib.parse.urlencode(
        {
            "command": "/npo",
            "text": "playbook submit",
            "user_id": "U1",
            "channel_id": "C1",
            "team_id": "T1",
            "trigger_id": "trigS",
            "response_url": slack.url + "r",
        }
    )
    assert json.loads(_send(app, command).body)["response_type"] == "ephemeral"
    modal = slack.wait_for("views.open")[0]["view"]
    assert (json.loads(modal) if isinstance(modal, str) else modal)[
        "callback_id"
    ] == "npo_submit_playbook"

    bad = _send(app, _submission({**FORM, "risk": "extreme"}, "U1"))
    assert "errors" in bad.body and "risk" in bad.body
    assert _send(app, _submission(FORM, "U1")).status == 200
    review = slack.wait_for("chat.postMessage")[0]
    assert review["channel"] == REVIEW
    blocks = json.loads(review["blocks"]) if isinstance(review["blocks"], str) else review["blocks"]
    submission_id = blocks[-1]["elements"][0]["value"]
    ts = "1700000001.000100"

    _send(app, _click("npo_approve", submission_id, "U1", ts))  # the author
    refusal = slack.wait_for("chat.postEphemeral")[0]
    assert "author cannot approve" in refusal["text"]
    _send(app, _click("npo_approve", submission_id, "U9", ts))  # not a reviewer
    assert "Only the configured reviewers" in slack.wait_for("chat.postEphemeral", 2)[1]["text"]
    assert not (tmp_path / "approved").exists()

    _send(app, _click("npo_approve", submission_id, "U02REV", ts))
    update = slack.wait_for("chat.update")[0]
    assert "Approved by <@U02REV>" in json.dumps(update["blocks"])
    [pb] = lint_folder(tmp_path / "approved").playbooks
    assert (pb.id, pb.meta.status, pb.meta.authors, pb.meta.reviewers) == (
        "pdu-breaker-trip",
        Status.VETTED,
        ["U1"],
        ["U02REV"],
    )
    assert approvals == [1]
    _send(app, _click("npo_request_changes", submission_id, "U3", ts))
    assert "already been reviewed" in slack.wait_for("chat.postEphemeral", 3)[2]["text"]
