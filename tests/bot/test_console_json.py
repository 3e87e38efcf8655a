"""``npo chat --json``: one parseable object per line, with the fields scripts rely on."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
from sqlalchemy.engine import Engine

from bot.console.chat_json import run_console_json
from bot.service import NPOService
from core.npo import NPOConfig, ThresholdMode
from core.policy import Verdict
from tests.fakes import FakeHit, FakeRetriever, ScriptedSPE

NOW = dt.datetime(2026, 12, 1, 3, tzinfo=dt.UTC)


def _run(engine: Engine, lines: list[str], fixed: float = 0.5) -> list[dict[str, object]]:
    hits = [FakeHit("optic", 0.8, "replace_optic"), FakeHit("drain", 0.6, "drain_link")]
    spe = ScriptedSPE({"drain_link": Verdict.NEEDS_APPROVAL})
    cfg = NPOConfig(threshold_mode=ThresholdMode.FIXED, fixed_threshold=fixed)
    svc = NPOService(engine, FakeRetriever(hits), spe, cfg, np.random.default_rng(0), lambda: NOW)
    out: list[str] = []
    assert run_console_json(svc, lines, out.append) == 0
    return [json.loads(line) for line in out]


def test_each_incident_and_vote_is_one_json_object(engine: Engine) -> None:
    objs = _run(
        engine,
        ["like", "CRC errors on leaf-1 eth1/3", "like", "", "override wrong card", "bogus?"],
    )
    kinds = [o["type"] for o in objs]
    assert kinds == ["error", "decision", "ack", "ack", "decision"]
    decision = objs[1]
    assert decision["outcome"] == "recommend" and decision["playbook"] == "optic"
    assert decision["threshold"] == 0.5 and decision["verdict"] == "allow"
    assert decision["candidates"] == [
        {"playbook": "optic", "score": 0.8, "verdict": "allow"},
        {"playbook": "drain", "score": 0.6, "verdict": "needs_approval"},
    ]
    scenario = decision["scenario"]
    assert isinstance(scenario, dict) and scenario["device"] == "leaf-1"
    assert objs[2]["status"] == "stored" and objs[2]["playbook"] == "optic"
    assert objs[3]["status"] == "replaced" and objs[3]["kind"] == "override"
    assert objs[4]["recommendation_id"] != decision["recommendation_id"]


def test_an_abstention_lists_candidates_and_takes_a_like_by_name(engine: Engine) -> None:
    objs = _run(engine, ["CRC errors on leaf-1", "like drain", "like nope"], fixed=0.9)
    assert objs[0]["outcome"] == "abstain" and objs[0]["playbook"] is None
    assert objs[1]["status"] == "stored" and objs[1]["playbook"] == "drain"
    assert objs[2]["status"] == "not_a_candidate"


def test_a_second_engineer_approves_in_json(engine: Engine) -> None:
    hits = [FakeHit("drain", 0.8, "drain_link")]
    spe = ScriptedSPE({"drain_link": Verdict.NEEDS_APPROVAL})
    cfg = NPOConfig(threshold_mode=ThresholdMode.FIXED, fixed_threshold=0.5)
    svc = NPOService(engine, FakeRetriever(hits), spe, cfg, np.random.default_rng(0), lambda: NOW)
    out: list[str] = []
    lines = ["CRC errors on leaf-1", "approve", "as bo", "approve", "like"]
    run_console_json(svc, lines, out.append)
    objs = [json.loads(line) for line in out]
    assert objs[0]["outcome"] == "needs_approval"
    assert objs[1]["type"] == "approval" and objs[1]["status"] == "own_request"
    assert objs[2] == {"type": "operator", "operator": "bo"}
    assert objs[3]["status"] == "approved"
    approved = objs[3]["decision"]
    assert isinstance(approved, dict) and approved["outcome"] == "recommend"
    assert objs[4]["type"] == "ack" and objs[4]["status"] == "stored"
