"""Fuzz every listener end to end: malformed but correctly signed payloads go through the
real Bolt app. Nothing may crash with an unexpected error, answer 5xx, or change state;
afterwards the same app still handles real traffic."""

from __future__ import annotations

import io
import logging
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_bolt import App
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from bot.db.models import AuditEntry, Feedback, Recommendation
from bot.slack.serve import EdgeApp
from core.rego import RegoPolicyEngine
from tests.reliability.test_delivery import SECRET, _instance
from tests.slack_fake import (
    FakeSlackAPI,
    button_payload,
    event_body,
    fake_slack,
    form_body,
    signed_headers,
)

ACTIONS = [
    "npo_like",
    "npo_override",
    "npo_neutral",
    "npo_skip",
    "npo_like_candidate",
    "npo_details",
]

junk: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def maybe(right: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field that is right or junk."""
    return st.one_of(right, junk)


def _event(ev: dict[str, Any], n: int) -> str:
    return event_body(ev, f"EvF{n}")


events = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["app_mention", "message", "reaction_added", "reaction_removed"]),
        "user": maybe(st.just("U1")),
        "text": maybe(st.text(max_size=40)),
        "ts": maybe(st.just("1.0")),
        "channel": maybe(st.just("C1")),
        "reaction": maybe(st.sampled_from(["+1", "x", "red_circle"])),
        "item": maybe(
            st.fixed_dictionaries(
                {
                    "type": maybe(st.just("message")),
                    "channel": maybe(st.just("C1")),
                    "ts": maybe(st.just("1.0")),
                }
            )
        ),
    },
    optional={"thread_ts": junk, "subtype": junk, "bot_id": junk},
)

actions = st.fixed_dictionaries(
    {
        "type": st.just("block_actions"),
        "user": maybe(st.fixed_dictionaries({"id": maybe(st.just("U1"))})),
        "trigger_id": maybe(st.just("t")),
        "team": st.just({"id": "T1"}),
        "api_app_id": st.just("A1"),
        "container": maybe(
            st.fixed_dictionaries(
                {"channel_id": maybe(st.just("C1")), "message_ts": maybe(st.just("1.0"))}
            )
        ),
        "actions": st.lists(
            st.fixed_dictionaries(
                {
                    "action_id": st.sampled_from(ACTIONS),
                    "value": maybe(st.text(max_size=20)),
                    "action_ts": maybe(st.just("1.1")),
                }
            ),
            min_size=1,
            max_size=1,
        ),
    }
)

views = st.fixed_dictionaries(
    {
        "type": st.just("view_submission"),
        "user": maybe(st.fixed_dictionaries({"id": maybe(st.just("U1"))})),
        "team": st.just({"id": "T1"}),
        "api_app_id": st.just("A1"),
        "view": st.fixed_dictionaries(
            {
                "type": st.just("modal"),  # Bolt's own routing reads it; Slack always sends it
                "callback_id": st.sampled_from(["npo_override_modal", "npo_submit_modal"]),
                "id": st.just("V1"),
                "private_metadata": maybe(st.text(max_size=30)),
                "state": maybe(st.fixed_dictionaries({"values": junk})),
            }
        ),
    }
)

commands = st.fixed_dictionaries(
    {
        "command": st.just("/npo"),
        "text": st.sampled_from(
            [
                "",
                "help",
                "stats",
                "stats chart",
                "recommend",
                "playbook x",
                "playbook submit",
                "prefs verbosity full",
                "prefs",
                "stats divergence",
            ]
        )
        | st.text(max_size=30),
        "team_id": st.just("T1"),
        "api_app_id": st.just("A1"),
    },
    optional={
        "user_id": st.text(max_size=5),
        "channel_id": st.text(max_size=5),
        "trigger_id": st.text(max_size=5),
    },
)


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def logged_errors() -> Iterator[_Errors]:
    """Every ERROR logged while the fuzz runs, lazy listeners' failures included."""
    errors = _Errors()
    logging.getLogger().addHandler(errors)
    yield errors
    logging.getLogger().removeHandler(errors)


@pytest.fixture(scope="module")
def fuzz_app(
    rego_engine: RegoPolicyEngine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[App, FakeSlackAPI, Engine]]:
    from bot.db.engine import make_engine
    from bot.db.migrate import upgrade

    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz')}/npo.db"
    upgrade(url)
    engine = make_engine(url)
    with fake_slack() as api:
        yield _instance(api, engine, rego_engine, incident_channels="C9"), api, engine
    engine.dispose()


def _counts(engine: Engine) -> tuple[int, ...]:
    with Session(engine) as s:
        return tuple(
            int(s.exec(select(func.count()).select_from(m)).one())
            for m in (Recommendation, Feedback, AuditEntry)
        )


SENT = {"n": 0}
STATUSES: Counter[int] = Counter()


def _dispatch(app: App, body: str, content_type: str) -> int:
    """Through the production WSGI entry point, as Slack's HTTP request would arrive."""
    headers = signed_headers(SECRET, body, content_type)
    raw = body.encode()
    environ = {
        "REQUEST_METHOD": "POST",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "PATH_INFO": "/slack/events",
        "QUERY_STRING": "",
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(raw)),
        "wsgi.input": io.BytesIO(raw),
        "HTTP_X_SLACK_REQUEST_TIMESTAMP": str(headers["x-slack-request-timestamp"][0]),
        "HTTP_X_SLACK_SIGNATURE": str(headers["x-slack-signature"][0]),
    }
    answer: list[str] = []
    b"".join(EdgeApp(app)(environ, lambda status, _headers: answer.append(status)))
    return int(answer[0].split()[0])


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(kind=st.sampled_from(["event", "action", "view", "command"]), data=st.data())
def test_malformed_payloads_never_crash_a_listener_nor_change_state(
    fuzz_app: tuple[App, FakeSlackAPI, Engine],
    logged_errors: _Errors,
    kind: str,
    data: st.DataObject,
) -> None:
    app, _api, engine = fuzz_app
    before = _counts(engine)
    SENT["n"] += 1
    if kind == "event":
        ev = data.draw(events)
        if ev["type"] == "app_mention" and isinstance(ev["text"], str):
            ev["text"] = [ev["text"]]  # a well-formed mention is an incident: keep it junk
        status = _dispatch(app, _event(ev, SENT["n"]), "application/json")
    elif kind in ("action", "view"):
        payload = data.draw(actions if kind == "action" else views)
        body = form_body(payload)
        status = _dispatch(app, body, "application/x-www-form-urlencoded")
    else:
        status = _dispatch(app, urlencode(data.draw(commands)), "application/x-www-form-urlencoded")
    time.sleep(0.02)  # lazy listeners run after the ack
    STATUSES[status] += 1
    assert status < 500
    assert [r.getMessage() for r in logged_errors.records] == []
    assert _counts(engine)[:2] == before[:2]  # no recommendation, no vote from junk


def test_after_the_fuzz_real_traffic_still_works(
    fuzz_app: tuple[App, FakeSlackAPI, Engine], logged_errors: _Errors
) -> None:
    app, api, engine = fuzz_app
    time.sleep(0.5)  # the last lazy listeners finish
    assert [r.getMessage() for r in logged_errors.records] == []
    assert SENT["n"] >= 150, "the fuzz test runs first in this module"
    # Most junk is well-formed enough to be acknowledged and reach a listener.
    assert STATUSES[200] >= SENT["n"] // 2, STATUSES
    mention = {
        "type": "app_mention",
        "user": "U1",
        "text": "<@UBOT> CRC errors on leaf-1:eth1/3",
        "ts": "77.0",
        "channel": "C1",
    }
    assert _dispatch(app, _event(mention, 10_000), "application/json") == 200
    api.wait_for("chat.postMessage")
    with Session(engine) as session:
        rec_id = session.exec(select(Recommendation.id)).one()
    body = form_body(button_payload("npo_skip", rec_id, "U1", "C1", "1.0"))
    assert _dispatch(app, body, "application/x-www-form-urlencoded") == 200
    deadline = time.monotonic() + 10
    while _counts(engine)[1] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _counts(engine)[:2] == (1, 1)
