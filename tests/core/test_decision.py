from __future__ import annotations

import math

from core.bandit import ArmChoice
from core.decision import Candidate, Outcome, decide
from core.policy import Action, Verdict
from core.scenario import Scenario
from tests.fakes import ScriptedSPE

SCENARIO = Scenario("link", "crc_errors", severity="high", redundancy=2, device="leaf-1")
ARM = ArmChoice(index=2, threshold=0.7, alpha=3.0, beta=1.0, sample=0.8)


def _cand(pb: str, action: str, score: float) -> Candidate:
    return Candidate(
        pb, pb.title(), Action(action, "leaf-1"), similarity=0.6, score=score, model_prior=0.5
    )


def test_recommends_the_best_allowed_candidate_above_the_threshold() -> None:
    d = decide(
        SCENARIO,
        [_cand("b", "replace_optic", 0.75), _cand("a", "drain_link", 0.9)],
        ARM,
        ScriptedSPE(),
    )
    assert d.outcome is Outcome.RECOMMEND
    assert d.recommended
    assert d.chosen is not None
    assert d.chosen.playbook_id == "a"
    assert [c.playbook_id for c in d.candidates] == ["a", "b"]
    j = d.explanation.threshold
    assert (j.arm, j.threshold, j.score) == (2, 0.7, 0.9)
    assert math.isclose(j.margin, 0.2)
    assert "clears τ=0.7" in j.text
    assert "Beta(3.0, 1.0)" in j.text
    assert d.explanation.compliance.verdict is Verdict.ALLOW
    assert d.explanation.visual.score == 0.9
    assert any(f.label == "retrieval similarity" for f in d.explanation.facts)
    assert d.explanation.trace[-1] == "recommend a"


def test_a_denied_top_candidate_falls_back_to_the_next_allowed_one() -> None:
    spe = ScriptedSPE({"drain_link": Verdict.DENY})
    d = decide(
        SCENARIO, [_cand("a", "drain_link", 0.95), _cand("b", "replace_optic", 0.8)], ARM, spe
    )
    assert d.chosen is not None
    assert d.chosen.playbook_id == "b"
    assert [v.verdict for v in d.verdicts] == [Verdict.DENY, Verdict.ALLOW]


def test_blocked_is_never_shown_as_a_recommendation() -> None:
    spe = ScriptedSPE({"drain_link": Verdict.DENY})
    d = decide(
        SCENARIO, [_cand("a", "drain_link", 0.95), _cand("b", "replace_optic", 0.3)], ARM, spe
    )
    assert d.outcome is Outcome.BLOCKED
    assert d.chosen is None and d.pending is None
    assert not d.recommended
    assert d.explanation.compliance.verdict is Verdict.DENY
    assert "a is deny" in d.explanation.trace[-1]


def test_abstention_lists_all_candidates_with_their_scores() -> None:
    d = decide(
        SCENARIO,
        [_cand("a", "drain_link", 0.6), _cand("b", "replace_optic", 0.65)],
        ARM,
        ScriptedSPE(),
    )
    assert d.outcome is Outcome.ABSTAIN
    assert d.chosen is None
    assert [(c.playbook_id, c.score) for c in d.candidates] == [("b", 0.65), ("a", 0.6)]
    assert "is below τ=0.7" in d.explanation.threshold.text


def test_no_candidates_is_an_abstention_with_an_explanation() -> None:
    d = decide(SCENARIO, [], ARM, ScriptedSPE(), recent_losses=[0.1, 0.2])
    assert d.outcome is Outcome.ABSTAIN
    assert d.candidates == ()
    assert d.explanation.trace[-1] == "no playbook matched this incident"
    assert d.explanation.visual.recent_losses == (0.1, 0.2)


def test_every_candidate_is_checked_by_the_spe() -> None:
    spe = ScriptedSPE()
    decide(SCENARIO, [_cand(str(i), "drain_link", 0.9) for i in range(4)], ARM, spe)
    assert spe.calls == 4
