"""Nothing the bot echoes into Slack can broadcast, mention, link a channel or disguise a
link: every renderer escapes each value once (``bot.slack.escape``).

Slack reads ``<!channel>``, ``<!here>``, ``<!everyone>``, ``<@U…>``, ``<#C…>`` and
``<url|label>`` in mrkdwn (code blocks included); text from people, payloads, playbooks,
the database or an LLM must reach Slack as ``&lt;…&gt;`` and read back unchanged.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import time
import urllib.parse
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_bolt import App, BoltRequest, BoltResponse
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.alerts.alertmanager import AlertIntake, parse_notification
from bot.db.models import Recommendation
from bot.service import FeedbackInput, IncidentInput, NPOService
from bot.settings import Settings
from bot.slack.access import Access
from bot.slack.app import app_for, slack_context, web_client
from bot.slack.blocks import (
    fallback_text,
    recommendation_blocks,
    review_blocks,
    review_text,
    votes_line,
)
from bot.slack.escape import clip, escape, mention, unescape
from bot.slack.flows import SlackContext
from bot.slack.listeners.commands import SUBCOMMANDS
from core.bandit import ArmChoice
from core.decision import Candidate, Decision, Outcome, decide
from core.feedback import FeedbackKind
from core.npo import NPOConfig, ThresholdMode
from core.policy import Action, Verdict
from core.rego import RegoPolicyEngine
from core.scenario import Scenario
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

HOSTILE = (
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<@U0123ABC>",
    "<#C123>",
    "<https://evil.example|click>",
    "&",
    "&lt;",
)
VALID_ID = re.compile(r"[UW][A-Z0-9]{2,}")
MACHINE_KEYS = {"value", "action_id", "block_id", "callback_id", "private_metadata"}
SECRET = "escape-secret"
_ids = itertools.count(1)

# NUL is left out: PostgreSQL text cannot hold it (the stored paths would fail on it, which
# is an input-bounds question, not an escaping one).
# Text as it reaches a renderer: the edge (bot/text_input.clean_text) has removed NUL and
# replaced lone surrogates, which neither database nor the policy engine's JSON accepts.
any_text = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=12)
hostile = st.lists(st.one_of(any_text, st.sampled_from(HOSTILE)), min_size=1, max_size=4).map(
    "".join
)
word = hostile.map(lambda s: "".join(s.split())).filter(bool)  # one command word
# Alert labels go into the SPE's input; a control character there is a policy-engine input
# question (it fails evaluation today), not an escaping one.
printable = st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=12)
label_text = st.lists(st.one_of(printable, st.sampled_from(HOSTILE)), min_size=1, max_size=4).map(
    "".join
)
user_ids = st.one_of(st.from_regex(r"[UW][A-Z0-9]{2,10}", fullmatch=True), hostile)
votes = st.tuples(user_ids, st.sampled_from(list(FeedbackKind)), hostile)


# -- what every test checks ---------------------------------------------------------------


def shown_strings(node: object) -> Iterator[str]:
    """Every string Slack may render; button values and ids travel back to us unrendered."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            if key not in MACHINE_KEYS:
                yield from shown_strings(value)
    elif isinstance(node, list | tuple):
        for value in node:
            yield from shown_strings(value)


def assert_safe(node: object, mentioned: Collection[str] = ()) -> list[str]:
    """No broadcast, channel link or link; ``<@…>`` only for ``mentioned`` (valid) ids."""
    texts = list(shown_strings(node))
    for text in texts:
        assert "<!" not in text and "<#" not in text and "<http" not in text, text
        for found in re.finditer(r"<@([^>]*)>?", text):
            assert found.group(0) == f"<@{found.group(1)}>", text  # a whole mention
            assert found.group(1) in mentioned and VALID_ID.fullmatch(found.group(1)), text
        rest = re.sub(r"<@[UW][A-Z0-9]{2,}>", "", text)
        assert "<" not in rest and ">" not in rest, text  # every other bracket is escaped
    return texts


def assert_shown(texts: list[str], value: str) -> None:
    """``value`` reads back exactly (escaped once, not twice, and not lost)."""
    assert any(value in unescape(t) for t in texts), (value, texts)


# -- unit tests ---------------------------------------------------------------------------


def test_escape_replaces_only_slacks_three_control_characters() -> None:
    assert escape("<!channel> wake up & see") == "&lt;!channel&gt; wake up &amp; see"
    assert escape("&lt;") == "&amp;lt;"  # text that looks escaped is still text
    assert escape("*bold* _it_ `code` 'quote' \"dq\" é") == "*bold* _it_ `code` 'quote' \"dq\" é"
    assert escape("") == ""


@pytest.mark.parametrize("text", [*HOSTILE, "&amp;amp;", "a < b > c", "&gt;&lt;&amp;", ""])
def test_unescape_inverts_escape_exactly_once(text: str) -> None:
    assert unescape(escape(text)) == text
    assert "&amp;amp;" not in escape(text) or "&amp;" in text


def test_mention_only_for_valid_user_ids() -> None:
    assert mention("U0123ABC") == "<@U0123ABC>"
    assert mention("W99ZZ") == "<@W99ZZ>"
    for bad in ("U7", "u0123abc", "C0123ABC", "<!channel>", "U0123ABC> <!here", "U0123ABC\n", ""):
        assert "<" not in mention(bad) and unescape(mention(bad)) == bad


def test_clip_never_cuts_inside_an_entity_or_a_mention() -> None:
    assert clip("abc", 3) == "abc"
    assert clip("x" * 10 + "&amp;", 13) == "x" * 10 + "…"
    assert clip("x" * 10 + "&lt;!here&gt;", 14) == "x" * 10 + "…"
    assert clip("x" * 10 + "&lt;!here&gt;", 16) == "x" * 10 + "&lt;!…"
    assert clip("by <@U0123ABC> ok", 10) == "by …"


def test_only_the_escape_module_builds_mentions() -> None:
    bot = Path(__file__).resolve().parents[2] / "bot"
    for path in bot.rglob("*.py"):
        if path.name != "escape.py":
            assert "<@{" not in path.read_text(encoding="utf-8"), path


def test_each_value_is_escaped_exactly_once() -> None:
    decision = _decision(Outcome.RECOMMEND, ["R&D <x>"], "leaf-1")
    cast = [("U0123ABC", FeedbackKind.OVERRIDE, "&lt; & <!here>")]
    blocks = recommendation_blocks("r" * 32, decision, ["a & b"], "full", cast, "S&P")
    text = json.dumps([blocks, fallback_text(decision)], ensure_ascii=False)
    assert "R&amp;D &lt;x&gt;" in text and "a &amp; b" in text and "S&amp;P" in text
    assert "Overridden by <@U0123ABC>: &amp;lt; &amp; &lt;!here&gt;" in text
    assert "&amp;amp;" not in text and "&amp;lt;x" not in text


# -- every renderer, every untrusted field ------------------------------------------------


def _decision(outcome: Outcome, texts: list[str], device: str) -> Decision:
    """A real core decision whose every free-text field holds hostile text."""
    cands = []
    for i, t in enumerate(texts):
        score = 0.3 if outcome is Outcome.ABSTAIN else 0.9 - i * 0.01
        target = t if i % 2 else ""  # an empty target shows the scenario's device instead
        cands.append(
            Candidate(f"{t}-{i}", f"title {t}", Action(f"act {t}", target), 0.5, score, 0.5)
        )
    verdict = {
        Outcome.BLOCKED: Verdict.DENY,
        Outcome.NEEDS_APPROVAL: Verdict.NEEDS_APPROVAL,
        Outcome.DEFERRED: Verdict.DEFER,
    }.get(outcome)
    denied = {c.action.name: verdict for c in cands} if verdict else {}
    scenario = Scenario(f"comp {texts[0]}", f"fault {texts[-1]}", device=device)
    decision = decide(scenario, cands, ArmChoice(2, 0.7, 1.0, 1.0, 0.5), ScriptedSPE(denied))
    assert decision.outcome is outcome
    return decision


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from(list(Outcome)),
    st.lists(hostile, min_size=1, max_size=5, unique=True),
    st.lists(hostile, max_size=5),
    hostile,
    hostile,
    st.one_of(st.none(), st.lists(votes, min_size=1, max_size=3)),
    st.sampled_from(["brief", "full"]),
)
def test_recommendation_messages_escape_every_field(
    outcome: Outcome,
    texts: list[str],
    steps: list[str],
    summary: str,
    device: str,
    cast: list[tuple[str, FeedbackKind, str]] | None,
    verbosity: str,
) -> None:
    decision = _decision(outcome, texts, device)
    blocks = recommendation_blocks("r" * 32, decision, steps, verbosity, cast, summary)
    valid = {u for u, _, _ in cast or () if VALID_ID.fullmatch(u)}
    shown = assert_safe([blocks, fallback_text(decision)], valid)
    assert_shown(shown, summary)
    if decision.chosen is not None:
        c = decision.chosen
        for value in (c.title, c.playbook_id, c.action.name, c.action.target, *steps):
            assert_shown(shown, value)
        assert_shown(assert_safe(fallback_text(decision)), c.title)
    else:
        for cand in decision.candidates[:5]:
            assert_shown(shown, cand.title)
            assert_shown(shown, cand.playbook_id)
    if outcome in (Outcome.BLOCKED, Outcome.NEEDS_APPROVAL, Outcome.DEFERRED):
        assert_shown(shown, decision.explanation.compliance.summary)  # policy messages
    if decision.pending is not None:  # the candidate awaiting approval or a later time
        for value in (decision.pending.title, decision.pending.action.name, *steps):
            assert_shown(shown, value)
    if verbosity == "full":
        for step in decision.explanation.trace:
            assert_shown(shown, step)
        for fact in decision.explanation.facts:
            assert_shown(shown, fact.value)
    for user, _, reason in cast or ():
        assert_shown(shown, reason)
        assert_shown(shown, user)
        if user in valid:
            assert any(f"<@{user}>" in t for t in shown)


@settings(max_examples=80, deadline=None)
@given(st.lists(votes, max_size=4))
def test_votes_line_mentions_only_valid_ids(cast: list[tuple[str, FeedbackKind, str]]) -> None:
    line = votes_line(cast)
    valid = {u for u, _, _ in cast if VALID_ID.fullmatch(u)}
    shown = assert_safe(line, valid)
    for user, _, reason in cast:
        assert_shown(shown, user)
        assert_shown(shown, reason)


@settings(max_examples=80, deadline=None)
@given(hostile, user_ids, hostile, st.one_of(st.none(), user_ids), st.booleans(), hostile)
def test_review_messages_escape_the_submission(
    playbook_id: str, author: str, text: str, reviewer: str | None, approved: bool, decided: str
) -> None:
    blocks = review_blocks("s1", playbook_id, author, text, reviewer, approved)
    valid = {u for u in (author, reviewer) if u and VALID_ID.fullmatch(u)}
    shown = assert_safe(
        [blocks, review_text(playbook_id), review_text(playbook_id, decided)], valid
    )
    for value in (playbook_id, author, text, decided, reviewer or ""):
        assert_shown(shown, value)


# -- command replies ----------------------------------------------------------------------


@pytest.fixture
def service(engine: Engine, rego_engine: RegoPolicyEngine) -> NPOService:
    retriever = FakeRetriever([FakeHit("link-optic", 0.85, "replace_optic")])
    config = NPOConfig(threshold_mode=ThresholdMode.FIXED, fixed_threshold=0.7)
    now = dt.datetime(2026, 11, 25, 3, tzinfo=dt.UTC)
    return NPOService(
        engine, retriever, rego_engine, config, np.random.default_rng(0), clock=lambda: now
    )


def _reply(ctx: SlackContext, text: str, user: str = "U0123ABC") -> str:
    name, _, arg = text.partition(" ")
    return SUBCOMMANDS[name].reply(ctx, {"user_id": user, "text": text}, arg)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(word, hostile, st.booleans())
def test_command_replies_escape_what_they_echo(
    service: NPOService, ident: str, stored: str, known: bool
) -> None:
    access = Access(playbook_admins=("U0123ABC",))  # may pause: the reply echoes the id
    ctx = SlackContext(service, access, lambda pb: [], lambda pb: stored if known else None)
    shown = assert_safe(_reply(ctx, f"playbook {ident}"))
    assert_shown(shown, stored if known else ident)
    for verb in ("pause", "resume"):
        assert_shown(assert_safe(_reply(ctx, f"playbook {verb} {ident}")), ident)
    assert_safe(_reply(ctx, f"stats {ident}"))
    for usage in ("playbook a b c", "recommend", "prefs nonsense", "help"):
        assert_safe(_reply(ctx, usage))
    assert "/npo playbook <id>" in unescape(_reply(ctx, "playbook a b c"))


def test_stats_tables_escape_stored_playbook_ids(
    engine: Engine, rego_engine: RegoPolicyEngine
) -> None:
    bad = "<!channel>-pb<https://evil.example|click>"
    service = NPOService(
        engine,
        FakeRetriever([FakeHit(bad, 0.85, "replace_optic")]),
        rego_engine,
        NPOConfig(threshold_mode=ThresholdMode.FIXED, fixed_threshold=0.7),
        np.random.default_rng(0),
    )
    text = "CRC errors on leaf-1:eth1/3 redundancy=2 in maintenance window"
    rec = service.recommend(IncidentInput(text, "test", reporter="U0123ABC"))
    assert rec.decision.chosen is not None and rec.decision.chosen.playbook_id == bad
    service.record_feedback(
        FeedbackInput(rec.recommendation_id, "U0123ABC", FeedbackKind.OVERRIDE, "e1", reason="x")
    )
    ctx = SlackContext(service, Access(), lambda pb: [], lambda pb: None)
    assert_shown(assert_safe(_reply(ctx, "stats")), bad)
    assert_safe(_reply(ctx, "stats divergence"))
    assert_safe(_reply(ctx, f"stats {bad}"))


# -- end to end: the real Bolt app and the alert intake against the fake Web API ----------


@pytest.fixture
def slack() -> Iterator[FakeSlackAPI]:
    with fake_slack() as api:
        yield api


def _settings(api: FakeSlackAPI) -> Settings:
    return Settings.model_validate(
        {
            "slack_bot_token": "xoxb-test",
            "slack_signing_secret": SECRET,
            "slack_api_url": api.url,
            "incident_channels": ("CINC",),
        }
    )


def _send(app: App, body: str, content_type: str) -> BoltResponse:
    headers = signed_headers(SECRET, body, content_type)
    return app.dispatch(BoltRequest(body=body, headers=headers))


def _posted(call: dict[str, Any]) -> dict[str, Any]:
    """A recorded Web API call with its blocks decoded (form posts carry them as JSON)."""
    blocks = call.get("blocks", [])
    return {**call, "blocks": json.loads(blocks) if isinstance(blocks, str) else blocks}


def _message_ts(engine: Engine, rec_id: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with Session(engine) as s:
            rec = s.get(Recommendation, rec_id)
            if rec is not None and rec.message_ts:
                return rec.message_ts
        time.sleep(0.02)
    raise AssertionError("the recommendation was never attached to its message")


def test_an_override_reason_cannot_page_the_channel(
    slack: FakeSlackAPI, service: NPOService, engine: Engine
) -> None:
    settings = _settings(slack)
    client = web_client(settings)
    app = app_for(
        settings, slack_context(settings, service, lambda pb: [], lambda pb: None, client), client
    )
    event = {
        "type": "app_mention",
        "user": "U0123ABC",
        "text": "<@UBOT> CRC errors on leaf-1:eth1/3 redundancy=2 in maintenance window",
        "ts": "1.0",
        "channel": "CINC",
    }
    assert _send(app, event_body(event, f"Ev{next(_ids)}"), "application/json").status == 200
    posted = _posted(slack.wait_for("chat.postMessage")[0])
    actions = next(b for b in posted["blocks"] if b["type"] == "actions")
    rec_id = str(actions["elements"][0]["value"])
    ts = _message_ts(engine, rec_id)
    click = button_payload("npo_override", rec_id, "U07OPS", "CINC", ts)
    assert _send(app, form_body(click), "application/x-www-form-urlencoded").status == 200
    view = slack.wait_for("views.open")[0]["view"]
    metadata = (json.loads(view) if isinstance(view, str) else view)["private_metadata"]
    submission = override_submission_payload(metadata, "U07OPS", "<!channel> wake up")
    body = "payload=" + urllib.parse.quote(json.dumps(submission))
    assert _send(app, body, "application/x-www-form-urlencoded").status == 200
    update = _posted(slack.wait_for("chat.update")[-1])
    raw = json.dumps(update)
    assert "<!channel>" not in raw
    assert "Overridden by <@U07OPS>: &lt;!channel&gt; wake up" in json.dumps(update["blocks"])
    assert_safe([update["text"], update["blocks"]], {"U07OPS"})
    [vote] = service.votes(rec_id)  # stored as given: escaping happens only on the way out
    assert vote.reason == "<!channel> wake up"


def _notification(group: str, labels: dict[str, str], annotations: dict[str, str]) -> object:
    alert = {
        "status": "firing",
        "labels": labels,
        "annotations": annotations,
        "startsAt": "2026-11-25T03:00:00Z",
        "fingerprint": f"fp-{group}",
    }
    return {
        "version": "4",
        "groupKey": group,
        "status": "firing",
        "commonLabels": labels,
        "alerts": [alert, {**alert, "status": "resolved", "fingerprint": f"fp2-{group}"}],
    }


def _intake(api: FakeSlackAPI, service: NPOService) -> AlertIntake:
    settings = _settings(api)
    client = web_client(settings)
    ctx = slack_context(settings, service, lambda pb: ["step <!here>"], lambda pb: None, client)
    return AlertIntake(ctx, client, [], "CALERT")


def test_alert_labels_and_annotations_cannot_broadcast(
    slack: FakeSlackAPI, service: NPOService
) -> None:
    labels = {
        "alertname": "<!here> LinkErrors",
        "device": "<!everyone>",
        "severity": "high",
        "team": "<!channel>",
    }
    annotations = {"summary": "<!everyone> CRC errors", "description": "leaf-3 <!here> eth1/4"}
    outcome = _intake(slack, service).handle(
        parse_notification(_notification("g1", labels, annotations))
    )
    assert outcome.counts == {"recommended": 1, "repeated": 0, "resolved": 1}
    messages = [_posted(m) for m in slack.of("chat.postMessage")]
    assert len(messages) == 3  # the thread root, the recommendation, the resolved line
    for message in messages:
        assert_safe([message["text"], message["blocks"]])
    root, _, resolved = (m["text"] for m in messages)
    assert "&lt;!here&gt; LinkErrors" in root and "&lt;!here&gt; LinkErrors" in resolved
    blocks = json.dumps(messages[1]["blocks"])
    # "<!everyone>" is no hostname, so it is never taken as the device; whatever of it the
    # message shows (the summary) is escaped.
    assert "<!everyone>" not in blocks and "<!here>" not in blocks


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.dictionaries(st.sampled_from(["alertname", "device", "instance", "team"]), label_text),
    st.dictionaries(st.sampled_from(["summary", "description"]), label_text),
)
def test_alert_messages_escape_every_label(
    slack: FakeSlackAPI, service: NPOService, labels: dict[str, str], annotations: dict[str, str]
) -> None:
    group = f"g{next(_ids)}"
    before = len(slack.of("chat.postMessage"))
    _intake(slack, service).handle(parse_notification(_notification(group, labels, annotations)))
    messages = [_posted(m) for m in slack.of("chat.postMessage")[before:]]
    assert messages
    for message in messages:
        assert_safe([message.get("text", ""), message["blocks"]])
    name = labels.get("alertname", "alerts")
    assert_shown([messages[0]["text"]], name)
