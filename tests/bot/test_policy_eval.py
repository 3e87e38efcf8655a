"""Off-policy evaluation from the real decision log: propensities are logged per decision."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bot.cli.commands import main
from bot.db.models import Recommendation
from bot.reporting.policy_eval import logged_decisions, policy_report
from bot.service import FeedbackInput, IncidentInput, NPOService
from core.feedback import FeedbackKind
from core.npo import NPOConfig, ThresholdMode
from core.rego import RegoPolicyEngine
from core.utility import UtilityConfig
from tests.fakes import FakeHit, FakeRetriever


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_eval_policy_from_logged_decisions(
    db_url: str,
    engine: Engine,
    rego_engine: RegoPolicyEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    service = NPOService(
        engine,
        FakeRetriever([FakeHit("link-optic", 0.75, "replace_optic")]),
        rego_engine,
        NPOConfig(),
        np.random.default_rng(5),
    )
    text = "CRC errors on leaf-1:eth1 redundancy=2 in maintenance window"
    for i in range(30):
        rec = service.recommend(IncidentInput(text, "console"))
        kind = FeedbackKind.LIKE if rec.decision.recommended else FeedbackKind.SKIPPED
        service.record_feedback(FeedbackInput(rec.recommendation_id, f"U{i}", kind, f"e{i}"))
    with Session(engine) as s:
        recs = s.exec(select(Recommendation)).all()
        assert all(r.policy == "thompson" and 0 < r.propensity <= 1 for r in recs)
    monkeypatch.setenv("NPO_DATABASE_URL", db_url)
    assert main(["eval", "policy", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["decisions"] == 30
    assert set(report["policies"]) == {
        "fixed:0.5",
        "fixed:0.6",
        "fixed:0.7",
        "fixed:0.8",
        "fixed:0.9",
        "live_bandit",
        "always_abstain",
    }
    assert report["reward"] == "utility"
    for estimates in report["policies"].values():
        assert set(estimates) == {"ips", "snips", "dr"}
        assert estimates["dr"]["low"] <= estimates["dr"]["value"] <= estimates["dr"]["high"]
    assert main(["eval", "policy"]) == 0
    assert "live_bandit" in capsys.readouterr().out


def test_logged_rewards_are_utilities_and_silence_does_not_win(
    engine: Engine, rego_engine: RegoPolicyEngine
) -> None:
    """An unanswered abstention earns 0 (not 0.9 as 1 − loss gave it), an override costs C,
    and never recommending pays −M for every playbook the operator confirmed."""
    service = NPOService(
        engine,
        FakeRetriever([FakeHit("link-optic", 0.75, "replace_optic")]),
        rego_engine,
        NPOConfig(threshold_mode=ThresholdMode.FIXED, fixed_threshold=0.5),
        np.random.default_rng(5),
    )
    text = "CRC errors on leaf-1:eth1 redundancy=2 in maintenance window"
    kinds = [FeedbackKind.LIKE] * 6 + [FeedbackKind.OVERRIDE] * 2 + [FeedbackKind.SKIPPED] * 2
    for i, kind in enumerate(kinds):
        rec = service.recommend(IncidentInput(text, "console"))
        assert rec.decision.recommended
        service.record_feedback(FeedbackInput(rec.recommendation_id, f"U{i}", kind, f"e{i}"))
    cfg = UtilityConfig()
    rewards = sorted(d.reward for d in logged_decisions(engine, cfg))
    assert rewards == sorted([1.0] * 6 + [-cfg.override_cost] * 2 + [0.0] * 2)
    report = policy_report(engine, np.random.default_rng(0), config=cfg)
    fixed = report["policies"]["fixed:0.5"]["snips"]["value"]
    assert fixed == pytest.approx((6 - 2 * cfg.override_cost) / 10)
    abstain = report["policies"]["always_abstain"]["dr"]["value"]
    assert abstain == pytest.approx(-cfg.miss_cost * 6 / 10)
