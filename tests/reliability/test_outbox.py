"""kill -9 after Slack was told an incident arrived: nothing acknowledged is lost.

A bot process is killed (1) after acknowledging a mention but before deciding it, and
(2) after storing its recommendation but before the post reached Slack. Another process
on the same database then finishes both, and posts each recommendation exactly once.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bot.db.engine import make_engine
from bot.db.models import IncidentInbox, Recommendation
from bot.service import POST_LEASE, IncidentInput, NPOService
from bot.settings import Settings
from bot.slack.app import slack_context, web_client
from bot.slack.outbox import deliver_pending
from core.npo import NPOConfig
from testkit.fakes import FakeHit, FakeRetriever, ScriptedSPE, scripted_service
from tests.slack_fake import FakeSlackAPI, fake_slack

WORKER = textwrap.dedent(
    """
    import sys, threading, time
    import numpy as np
    from slack_bolt import BoltRequest
    from bot.db.engine import make_engine
    from bot.db.migrate import upgrade
    from bot.service import POST_LEASE, IncidentInput, NPOService
    from bot.settings import Settings
    from bot.slack.app import create_app
    from core.npo import NPOConfig
    from tests.fakes import FakeHit, FakeRetriever, ScriptedSPE
    from tests.slack_fake import event_body, signed_headers

    url, api_url, mode = sys.argv[1], sys.argv[2], sys.argv[3]

    class Stuck(FakeRetriever):
        def search(self, query, k=5):
            if mode == "before-decision":
                time.sleep(600)  # the process dies here, after the ack
            return super().search(query, k)

    upgrade(url)
    service = NPOService(make_engine(url), Stuck([FakeHit("pb", 0.9)]), ScriptedSPE(),
                         NPOConfig(), np.random.default_rng(0))
    settings = Settings.model_validate({"slack_bot_token": "xoxb", "slack_signing_secret": "s",
                                        "slack_api_url": api_url})
    app = create_app(settings, service, lambda pb: [], lambda pb: None)
    event = {"type": "app_mention", "user": "U1", "text": "<@UBOT> link down on leaf-1",
             "ts": "100.0", "channel": "C1"}
    body = event_body(event, "Ev" + mode)
    resp = app.dispatch(BoltRequest(body=body, headers=signed_headers("s", body,
                                                                      "application/json")))
    print(f"acked {resp.status}", flush=True)
    time.sleep(600)
    """
)


def _start(url: str, api_url: str, mode: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, url, api_url, mode],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_for(predicate: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def test_a_killed_process_loses_no_acknowledged_incident_and_posts_once(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/outbox.db"
    dying = FakeSlackAPI()
    dying.hang("chat.postMessage")  # the post hangs after the store: the process dies there
    silent_url = dying.url

    first = _start(url, silent_url, "before-decision")
    assert first.stdout is not None
    assert first.stdout.readline().strip() == "acked 200"
    os.kill(first.pid, signal.SIGKILL)  # acknowledged, never decided
    first.wait(timeout=10)

    second = _start(url, silent_url, "before-post")
    assert second.stdout is not None
    assert second.stdout.readline().strip() == "acked 200"
    engine = make_engine(url)

    def stored() -> bool:
        with Session(engine) as s:
            return s.exec(select(Recommendation)).first() is not None

    _wait_for(stored)
    os.kill(second.pid, signal.SIGKILL)  # decided and stored, never posted
    second.wait(timeout=10)
    dying.close()

    with Session(engine) as s:
        assert [r.post_state for r in s.exec(select(Recommendation))] == ["pending"]
        waiting = [i.event_id for i in s.exec(select(IncidentInbox)) if i.done_at is None]
        assert waiting == ["event:Evbefore-decision"]

    later = dt.datetime.now(dt.UTC) + POST_LEASE + dt.timedelta(minutes=1)  # past every lease
    service = scripted_service(engine, FakeHit("pb", 0.9), clock=lambda: later)
    with fake_slack() as api:
        settings = Settings.model_validate(
            {"slack_bot_token": "xoxb", "slack_signing_secret": "s", "slack_api_url": api.url}
        )
        client = web_client(settings)
        ctx = slack_context(settings, service, lambda pb: [], lambda pb: None, client)
        assert deliver_pending(ctx, client) == {"decided": 1, "posted": 1, "failed": 0}
        assert deliver_pending(ctx, client) == {"decided": 0, "posted": 0, "failed": 0}  # once
        posts = api.of("chat.postMessage")
    assert len(posts) == 2
    assert {p["thread_ts"] for p in posts} == {"100.0"}
    with Session(engine) as s:
        assert sorted(r.post_state for r in s.exec(select(Recommendation))) == [
            "posted",
            "posted",
        ]
        assert all(i.done_at is not None for i in s.exec(select(IncidentInbox)))
    engine.dispose()


def test_the_inbox_write_before_the_ack_waits_at_most_a_second(engine: Engine) -> None:
    """Slack's 3-second deadline: while another writer holds the database, the inbox write
    gives up after about a second (the request fails and Slack retries) instead of
    waiting out the usual 30-second busy timeout."""
    service = NPOService(
        engine, FakeRetriever([]), ScriptedSPE(), NPOConfig(), np.random.default_rng(0)
    )
    incident = IncidentInput("link down on leaf-1", "slack", channel="C1", source_event_id="E1")
    holder = engine.connect()
    holder.begin()  # BEGIN IMMEDIATE on SQLite
    if engine.dialect.name == "postgresql":  # a writer holding the row the insert needs
        service_row = {
            "event_id": "E1",
            "incident_json": "{}",
            "received_at": dt.datetime.now(dt.UTC),
        }
        holder.execute(IncidentInbox.__table__.insert(), service_row)  # type: ignore[attr-defined]
    started = time.monotonic()
    try:
        with pytest.raises(Exception):  # noqa: B017, PT011 - the driver's lock error
            service.accept(incident)
    finally:
        elapsed = time.monotonic() - started
        holder.rollback()
        holder.close()
    assert elapsed < 2.5
    assert service.accept(incident) is True  # once the writer is gone
