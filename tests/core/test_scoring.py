"""The per-scenario Beta posterior: what operators can feel, and exact take-back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.feedback import FeedbackKind
from core.scoring import (
    Evidence,
    ScoreTable,
    ScoringConfig,
    ScoringRule,
    evidence,
    evidence_of_counts,
    posterior,
)

CFG = ScoringConfig()
KINDS = st.sampled_from(list(FeedbackKind))


def test_no_evidence_is_the_prior() -> None:
    assert posterior(Evidence(), 0.42, CFG) == pytest.approx(0.42)


@pytest.mark.parametrize("prior", [0.0, 0.1, 0.3, 0.5, 0.8])
def test_two_confirmations_clear_every_threshold_up_to_0_8(prior: float) -> None:
    """Two likes and no override: recommended the third time."""
    two = evidence(FeedbackKind.LIKE, CFG) + evidence(FeedbackKind.LIKE, CFG)
    assert posterior(two, prior, CFG) >= 0.8 - 1e-12
    one = evidence(FeedbackKind.LIKE, CFG)
    assert posterior(one, 0.0, CFG) < 0.7  # one is not enough from a prior of nothing


@pytest.mark.parametrize("prior", [0.5, 0.9, 1.0])
def test_one_override_stops_a_scenario(prior: float) -> None:
    once = evidence(FeedbackKind.OVERRIDE, CFG)
    assert posterior(once, prior, CFG) < 0.5
    two_then_override = evidence(FeedbackKind.LIKE, CFG) + evidence(FeedbackKind.LIKE, CFG) + once
    assert posterior(two_then_override, prior, CFG) <= 0.6 + 1e-12


def test_skip_adds_nothing_and_neutral_little() -> None:
    assert evidence(FeedbackKind.SKIPPED, CFG).empty
    neutral = evidence(FeedbackKind.NEUTRAL, CFG)
    assert neutral.observations == 1
    assert abs(posterior(neutral, 0.8, CFG) - 0.8) < 0.1


@given(st.lists(KINDS, max_size=20), st.floats(0.0, 1.0), st.integers(0, 19))
def test_taking_a_vote_back_is_exact_in_any_order(
    kinds: list[FeedbackKind], prior: float, drop: int
) -> None:
    table = ScoreTable(CFG)
    sid = ("pb", "ctx")
    for kind in kinds:
        table.add(sid, evidence(kind, CFG), kind, prior)
    if kinds:
        gone = kinds[drop % len(kinds)]
        table.remove(sid, evidence(gone, CFG))
        rest = kinds[: drop % len(kinds)] + kinds[drop % len(kinds) + 1 :]
    else:
        rest = []
    fresh = ScoreTable(CFG)
    for kind in rest:
        fresh.add(sid, evidence(kind, CFG), kind, prior)
    assert table.score(sid, prior) == pytest.approx(fresh.score(sid, prior))
    assert table.get(sid) == fresh.get(sid)


def test_evidence_from_counts_matches_adding_one_by_one() -> None:
    counts = {FeedbackKind.LIKE: 3, FeedbackKind.OVERRIDE: 1, FeedbackKind.NEUTRAL: 2}
    one_by_one = Evidence()
    for kind, n in counts.items():
        for _ in range(n):
            one_by_one = one_by_one + evidence(kind, CFG)
    assert evidence_of_counts(counts, CFG) == one_by_one


def test_a_retrained_prior_rebases_the_score() -> None:
    table = ScoreTable(CFG)
    sid = ("pb", "ctx")
    table.add(sid, evidence(FeedbackKind.LIKE, CFG), FeedbackKind.LIKE, 0.2)
    assert table.score(sid, 0.9) > table.score(sid, 0.2)


def test_robbins_monro_is_the_papers_constant_step() -> None:
    cfg = ScoringConfig(rule=ScoringRule.ROBBINS_MONRO, eta=0.5)
    table = ScoreTable(cfg)
    sid = ("pb", "ctx")
    table.add(sid, evidence(FeedbackKind.LIKE, cfg), FeedbackKind.LIKE, 0.4)
    assert table.score(sid, 0.4) == pytest.approx(0.4 + 0.5 * (1.0 - 0.4))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"eta": 0.0}, "eta"),
        ({"prior_strength": 0.0}, "prior_strength"),
        ({"override_weight": -1.0}, "override_weight"),
        ({"neutral_weight": -0.1}, "neutral_weight"),
    ],
)
def test_config_errors_name_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ScoringConfig(**kwargs)  # type: ignore[arg-type]
