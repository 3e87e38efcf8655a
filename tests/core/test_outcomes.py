"""Approval and deferral outcomes: the best candidate that clears τ and is not denied
decides; a pending candidate becomes a recommendation only once approved or allowed."""

from __future__ import annotations

import datetime as dt

import pytest

from core.bandit import ArmChoice
from core.codec import decision_from_dict, decision_to_dict
from core.decision import Candidate, Deferral, Outcome, approved, decide, reevaluated
from core.policy import Action, PolicyVerdict, Verdict
from core.scenario import Scenario
from tests.fakes import ScriptedSPE

SCENARIO = Scenario("link", "crc_errors", severity="high", redundancy=2, device="leaf-1")
ARM = ArmChoice(index=2, threshold=0.7, alpha=3.0, beta=1.0, sample=0.8)
AT = dt.datetime(2026, 12, 1, 23, 30, tzinfo=dt.UTC)


def _cand(pb: str, action: str, score: float) -> Candidate:
    return Candidate(pb, pb.title(), Action(action, "leaf-1"), 0.6, score, 0.5)


CANDS = [_cand("a", "drain_link", 0.95), _cand("b", "replace_optic", 0.8)]


@pytest.mark.parametrize(
    ("verdict", "outcome"),
    [(Verdict.NEEDS_APPROVAL, Outcome.NEEDS_APPROVAL), (Verdict.DEFER, Outcome.DEFERRED)],
)
def test_the_best_candidate_not_denied_decides_even_over_an_allowed_runner_up(
    verdict: Verdict, outcome: Outcome
) -> None:
    d = decide(SCENARIO, CANDS, ARM, ScriptedSPE({"drain_link": verdict}))
    assert d.outcome is outcome and d.awaiting
    assert d.chosen is None and not d.recommended
    assert d.pending is not None and d.pending.playbook_id == "a"
    assert d.explanation.compliance.verdict is verdict


def test_a_denied_best_candidate_passes_the_decision_to_the_next_one() -> None:
    spe = ScriptedSPE({"drain_link": Verdict.DENY, "replace_optic": Verdict.NEEDS_APPROVAL})
    d = decide(SCENARIO, CANDS, ARM, spe)
    assert d.outcome is Outcome.NEEDS_APPROVAL
    assert d.pending is not None and d.pending.playbook_id == "b"


def test_a_candidate_below_the_threshold_never_waits_for_approval() -> None:
    spe = ScriptedSPE({"drain_link": Verdict.DENY, "replace_optic": Verdict.NEEDS_APPROVAL})
    d = decide(SCENARIO, [CANDS[0], _cand("b", "replace_optic", 0.5)], ARM, spe)
    assert d.outcome is Outcome.BLOCKED and d.pending is None


def test_approval_turns_the_pending_candidate_into_the_recommendation() -> None:
    d = decide(SCENARIO, CANDS, ARM, ScriptedSPE({"drain_link": Verdict.NEEDS_APPROVAL}))
    a = approved(d, "U2", AT)
    assert a.outcome is Outcome.RECOMMEND and a.recommended
    assert a.chosen == d.pending and a.approved_by == "U2"
    assert a.explanation.trace[-1] == "approved by U2 at 2026-12-01 23:30 UTC: recommend a"
    with pytest.raises(ValueError, match="not needs_approval"):
        approved(a, "U3", AT)


@pytest.mark.parametrize(
    ("verdict", "outcome"),
    [
        (Verdict.ALLOW, Outcome.RECOMMEND),
        (Verdict.NEEDS_APPROVAL, Outcome.NEEDS_APPROVAL),
        (Verdict.DEFER, Outcome.DEFERRED),
        (Verdict.DENY, Outcome.BLOCKED),
    ],
)
def test_reevaluation_follows_the_fresh_verdict(verdict: Verdict, outcome: Outcome) -> None:
    d = decide(SCENARIO, CANDS, ARM, ScriptedSPE({"drain_link": Verdict.DEFER}))
    later = Deferral(AT + dt.timedelta(hours=1), False, 2, 3)
    r = reevaluated(d, PolicyVerdict(verdict), AT, later)
    assert r.outcome is outcome
    assert (r.chosen is not None) is (outcome is Outcome.RECOMMEND)
    assert r.deferral == (later if outcome is Outcome.DEFERRED else None)
    assert r.explanation.compliance.verdict is verdict
    assert r.explanation.trace[-1].endswith(f"a is {verdict}")


def test_pending_deferral_and_approver_survive_the_codec() -> None:
    d = decide(SCENARIO, CANDS, ARM, ScriptedSPE({"drain_link": Verdict.DEFER}))
    d = reevaluated(d, PolicyVerdict(Verdict.DEFER), AT, Deferral(AT, True, 1, 5))
    back = decision_from_dict(decision_to_dict(d))
    assert back.pending == d.pending and back.deferral == d.deferral
    a = approved(
        decide(SCENARIO, CANDS, ARM, ScriptedSPE({"drain_link": Verdict.NEEDS_APPROVAL})), "U2", AT
    )
    assert decision_from_dict(decision_to_dict(a)).approved_by == "U2"


def test_deferral_text_names_the_window_or_the_retry() -> None:
    tue = dt.datetime(2026, 12, 8, 2, 0, tzinfo=dt.UTC)
    assert Deferral(tue, True).text == "next window opens Tue 02:00 UTC"
    assert Deferral(tue, False).text == "no maintenance window known: checked again Tue 02:00 UTC"
