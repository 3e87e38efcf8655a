"""Block Kit rendering stays within Slack's limits whatever the decision holds."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.slack.blocks import MAX_ACTION_ID, MAX_BLOCKS, MAX_TEXT, MAX_VALUE, recommendation_blocks
from core.bandit import ArmChoice
from core.decision import Candidate, decide
from core.feedback import FeedbackKind
from core.policy import Action, Verdict
from core.scenario import Scenario
from tests.fakes import ScriptedSPE

long_text = st.text(min_size=0, max_size=5000)
ids = st.from_regex(r"[a-z][a-z0-9-]{0,60}", fullmatch=True)


def _walk(node: object) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    if isinstance(node, dict):
        found.append(node)
        for v in node.values():
            found += _walk(v)
    elif isinstance(node, list):
        for v in node:
            found += _walk(v)
    return found


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(ids, long_text, st.floats(0, 1)),
        min_size=0,
        max_size=12,
        unique_by=lambda t: t[0],
    ),
    st.lists(long_text, max_size=12),
    long_text,
    st.sampled_from(["brief", "full"]),
    st.sampled_from([None, Verdict.DENY]),
    st.booleans(),
)
def test_rendering_respects_block_kit_limits(
    cands: list[tuple[str, str, float]],
    steps: list[str],
    votes: str,
    verbosity: str,
    verdict: Verdict | None,
    judged: bool,
) -> None:
    scenario = Scenario("link", "crc_errors", text="x" * 4000, device="d" * 300)
    candidates = [
        Candidate(pb, title, Action("drain_link", "t" * 500), 0.5, score, 0.5)
        for pb, title, score in cands
    ]
    spe = ScriptedSPE({"drain_link": verdict} if verdict else {})
    arm = ArmChoice(2, 0.7, 1.0, 1.0, 0.5)
    decision = decide(scenario, candidates, arm, spe, [0.3] * 500)
    rec_id = "f" * 32
    shown = [("U0123ABC", FeedbackKind.OVERRIDE, votes)] if judged else None
    blocks = recommendation_blocks(rec_id, decision, steps, verbosity, shown)
    assert len(blocks) <= MAX_BLOCKS
    for node in _walk(blocks):
        if node.get("type") in {"mrkdwn", "plain_text"}:
            assert len(str(node["text"])) <= MAX_TEXT
        if "value" in node and node.get("type") == "button":
            value = str(node["value"])
            assert len(value) <= MAX_VALUE
            assert value.split("|")[0] == rec_id  # opaque: only ids travel in buttons
        if "action_id" in node:
            assert len(str(node["action_id"])) <= MAX_ACTION_ID
    json.dumps(blocks)  # serialisable as Slack needs it
