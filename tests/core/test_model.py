from __future__ import annotations

import json
import random

import numpy as np
import pytest

from core.feedback import FeedbackKind
from core.model import (
    Example,
    FeatureHasher,
    FitConfig,
    LogisticModel,
    SimilarityPrior,
    fit,
    weighted_log_loss,
)

NIGHT = {"component": "link", "hour": "night", "maintenance_window": "no"}
DAY = {"component": "link", "hour": "afternoon", "maintenance_window": "no"}


def _log() -> list[Example]:
    """Operators like draining at night and reject it in the afternoon; optics always ok."""
    log: list[Example] = []
    for _ in range(20):
        log.append(Example("drain", NIGHT, 0.7, FeedbackKind.LIKE))
        log.append(Example("drain", DAY, 0.7, FeedbackKind.OVERRIDE))
        log.append(Example("optic", DAY, 0.6, FeedbackKind.LIKE))
        log.append(Example("optic", NIGHT, 0.6, FeedbackKind.LIKE))
    return log


EXACT = FitConfig()  # a few distinct rows: Newton's method in the rows
FEATURES = FitConfig(exact_max_rows=0)  # many rows, few features: Newton in the features
ADAM = FitConfig(exact_max_rows=0, exact_max_features=0)  # past both


def _objective(model: LogisticModel, log: list[Example]) -> float:
    """The penalised loss the fit minimises (similarities on the bins' grid, so the
    model's predictions are those the fit saw)."""
    squared = float(model.weights @ model.weights) + model.similarity_weight**2
    return weighted_log_loss(model, log) + 0.5 * model.config.l2 * squared


def _varied_log(seed: int, votes: int) -> list[Example]:
    """Many playbooks and contexts, mixed verdicts: more features than distinct rows."""
    rng = random.Random(seed)
    kinds = [FeedbackKind.LIKE, FeedbackKind.OVERRIDE, FeedbackKind.NEUTRAL]
    log = []
    for _ in range(votes):
        context = {
            "component": rng.choice(["link", "server", "switch"]),
            "hour": rng.choice(["night", "morning", "afternoon"]),
            "severity": rng.choice(["low", "high"]),
        }
        similarity = rng.randrange(5, 20) / 20
        log.append(Example(f"pb-{rng.randrange(6)}", context, similarity, rng.choice(kinds)))
    return log


@pytest.mark.parametrize(
    "config", [EXACT, FEATURES, ADAM], ids=["newton", "newton-features", "adam"]
)
def test_fit_learns_a_context_dependent_preference(config: FitConfig) -> None:
    model = fit(_log(), config)
    assert model.predict("drain", NIGHT, 0.7) > 0.8
    assert model.predict("drain", DAY, 0.7) < 0.2
    assert model.predict("optic", DAY, 0.6) > 0.8
    assert weighted_log_loss(model, _log()) < weighted_log_loss(SimilarityPrior(), _log())


def test_fit_is_deterministic_and_ignores_skips() -> None:
    log = _log()
    with_skips = log + [Example("drain", NIGHT, 0.7, FeedbackKind.SKIPPED)] * 50
    a, b = fit(log), fit(with_skips)
    assert a.trained_on == len(log) == b.trained_on
    assert a.predict("drain", DAY, 0.7) == b.predict("drain", DAY, 0.7)


def test_duplicated_rows_equal_weighted_rows() -> None:
    """Folding identical rows into sufficient statistics must not change the optimum."""
    once = [
        Example("p", NIGHT, 0.5, FeedbackKind.LIKE),
        Example("p", NIGHT, 0.5, FeedbackKind.OVERRIDE),
    ]
    many = once * 7
    assert fit(once).predict("p", NIGHT, 0.5) == pytest.approx(
        fit(many).predict("p", NIGHT, 0.5), abs=1e-6
    )


def test_neutral_feedback_pulls_towards_one_half() -> None:
    log = [Example("p", NIGHT, 0.5, FeedbackKind.NEUTRAL)] * 40
    assert fit(log).predict("p", NIGHT, 0.5) == pytest.approx(0.5, abs=0.02)


def test_empty_log_gives_an_uninformed_model() -> None:
    model = fit([])
    assert model.trained_on == 0
    assert model.predict("any", NIGHT, 0.5) == pytest.approx(0.5)


def test_serialisation_round_trip_through_json() -> None:
    model = fit(_log())
    restored = LogisticModel.from_dict(json.loads(json.dumps(model.to_dict())))
    for pb, ctx in (("drain", NIGHT), ("drain", DAY), ("optic", DAY)):
        assert restored.predict(pb, ctx, 0.7) == pytest.approx(model.predict(pb, ctx, 0.7))


def test_similarity_prior_clips() -> None:
    assert SimilarityPrior().predict("x", {}, 1.7) == 1.0
    assert SimilarityPrior().predict("x", {}, -0.2) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"dim": 100}, "dim"),
        ({"dim": 8}, "dim"),
        ({"l2": -1.0}, "l2"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"max_iter": 0}, "max_iter"),
        ({"similarity_bins": 0}, "similarity_bins"),
        ({"exact_max_rows": -1}, "exact_max_rows"),
        ({"exact_max_features": -1}, "exact_max_features"),
    ],
)
def test_invalid_fit_config(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        FitConfig(**kwargs)  # type: ignore[arg-type]


def test_fit_is_the_same_whether_contexts_are_shared_or_fresh() -> None:
    """Votes read from the log share one mapping per distinct context; a caller may also
    build a fresh mapping per vote (and drop it at once). Both must fit the same model."""
    contexts = [{"component": c, "hour": h} for c in ("link", "server") for h in ("night", "day")]
    kinds = [FeedbackKind.LIKE, FeedbackKind.OVERRIDE, FeedbackKind.NEUTRAL]
    spec = [(f"pb-{i % 3}", i % 4, 0.3 + (i % 7) / 10, kinds[i % 3]) for i in range(300)]
    shared = fit([Example(pb, contexts[c], s, k) for pb, c, s, k in spec])
    fresh = fit(Example(pb, dict(contexts[c]), s, k) for pb, c, s, k in spec)
    assert shared.trained_on == fresh.trained_on == 300
    assert shared.weights.tolist() == fresh.weights.tolist()
    assert shared.predict("pb-1", contexts[2], 0.5) == fresh.predict("pb-1", contexts[2], 0.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_newton_finds_the_optimum_adam_approaches(seed: int) -> None:
    """Both solvers minimise one objective: Newton's weights score at least as well as
    Adam's, no small move away from them scores better, and the two predict alike."""
    log = _varied_log(seed, 200)
    exact, adam = fit(log, EXACT), fit(log, ADAM)
    best = _objective(exact, log)
    assert best <= _objective(adam, log) + 1e-9
    rng = np.random.default_rng(seed)
    used = np.flatnonzero(exact.weights)
    for _ in range(5):
        moved = exact.weights.copy()
        moved[used] += rng.normal(0.0, 0.05, size=used.size)
        nudged = LogisticModel(moved, exact.similarity_weight, exact.config)
        assert _objective(nudged, log) > best
    gaps = [
        abs(
            exact.predict(ex.playbook_id, ex.context, ex.similarity)
            - adam.predict(ex.playbook_id, ex.context, ex.similarity)
        )
        for ex in log
    ]
    assert max(gaps) < 0.02


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_newton_in_the_features_reaches_newton_in_the_rows(seed: int) -> None:
    """Two exact solvers of one objective: the same optimum, to the solvers' tolerance,
    and its gradient is zero (no nudge scores better)."""
    log = _varied_log(seed, 300)
    rows, features = fit(log, EXACT), fit(log, FEATURES)
    assert np.allclose(features.weights, rows.weights, atol=1e-4)
    assert abs(features.similarity_weight - rows.similarity_weight) < 1e-4
    assert abs(_objective(features, log) - _objective(rows, log)) < 1e-9
    assert _objective(features, log) <= _objective(fit(log, ADAM), log) + 1e-9


def test_newton_in_the_features_counts_a_feature_twice_when_two_names_collide() -> None:
    """A dimension so small that names share slots: a row then holds one slot twice, and
    the solver's Hessian must count it twice too (else it finds another optimum)."""
    log = _varied_log(3, 300)
    tiny_rows = FitConfig(dim=16)
    tiny_features = FitConfig(dim=16, exact_max_rows=0)
    rows, features = fit(log, tiny_rows), fit(log, tiny_features)
    assert np.allclose(features.weights, rows.weights, atol=1e-4)
    assert abs(features.similarity_weight - rows.similarity_weight) < 1e-4


def test_newton_stays_finite_on_separable_votes() -> None:
    """Every vote agrees: the penalty alone bounds the weights, and the step halving keeps
    Newton from overshooting."""
    log = [Example("p", NIGHT, 0.5, FeedbackKind.LIKE)] * 30 + [
        Example("q", DAY, 0.5, FeedbackKind.OVERRIDE)
    ] * 30
    for config in (EXACT, FEATURES):
        model = fit(log, config)
        assert np.isfinite(model.weights).all()
        assert model.predict("p", NIGHT, 0.5) > 0.9
        assert model.predict("q", DAY, 0.5) < 0.1
        assert _objective(model, log) <= _objective(fit(log, ADAM), log) + 1e-9


def test_hashing_items_is_hashing_the_mapping() -> None:
    hasher = FeatureHasher(FitConfig().dim)
    items = tuple(sorted(NIGHT.items()))
    assert hasher.indices_of("drain", items) == FeatureHasher(hasher.dim).indices("drain", NIGHT)
