"""The columnar tick (``core.log_columns``, ``fit_log``) against the object versions it
replaces on the tick's path: the same models, losses and signals, to the last bit."""

from __future__ import annotations

import numpy as np
import pytest

from core.feedback import FeedbackKind, alignment_loss
from core.log_columns import VoteColumns, evaluate_log, holdout_loss_log, monitor_signals
from core.model import Example, FitConfig, LabelledLog, SimilarityPrior, first_seen, fit, fit_log
from core.monitor import LoggedVote, MetaMonitor, MonitorConfig
from core.npo import NPOConfig, evaluate_candidate, holdout_loss

KINDS = list(FeedbackKind)


def _contexts() -> list[dict[str, str]]:
    contexts = [
        {"component": comp, "hour": hour, "severity": sev}
        for comp in ("link", "switch", "server")
        for hour in ("night", "day")
        for sev in ("low", "high")
    ]
    # The same mapping in another key order is the same scenario; a shorter one pads.
    contexts.append({"severity": "low", "hour": "night", "component": "link"})
    contexts.append({"component": "link"})
    return contexts


def _examples(n: int, seed: int) -> list[Example]:
    rng = np.random.default_rng(seed)
    contexts = _contexts()
    # Exact bin boundaries (k / 40: ties of round-half-even) and values outside [0, 1].
    sims = np.concatenate([np.arange(-2, 43) / 40, rng.uniform(0.2, 0.95, n)])
    return [
        Example(
            f"pb-{rng.integers(0, 6)}",
            contexts[int(rng.integers(0, len(contexts)))],
            float(sims[int(rng.integers(0, len(sims)))]),
            KINDS[int(rng.choice(4, p=[0.5, 0.25, 0.15, 0.1]))],
            seq,
        )
        for seq in range(1, n + 1)
    ]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_log_is_fit_to_the_last_bit(seed: int) -> None:
    examples = _examples(3000, seed)
    config = FitConfig(max_iter=60)
    a, b = fit(examples, config), fit_log(LabelledLog.of(examples), config)
    assert np.array_equal(a.weights, b.weights)
    assert a.similarity_weight == b.similarity_weight
    assert (
        a.trained_on == b.trained_on == sum(ex.kind is not FeedbackKind.SKIPPED for ex in examples)
    )


def test_an_empty_log_fits_the_empty_model() -> None:
    model = fit_log(LabelledLog.of([]))
    assert model.trained_on == 0 and not model.weights.any()


@pytest.mark.parametrize("seed", [0, 3])
def test_holdout_loss_and_evaluation_are_the_object_versions(seed: int) -> None:
    examples = _examples(2000, seed)
    labelled = [ex for ex in examples if ex.kind is not FeedbackKind.SKIPPED]
    log = LabelledLog.of(labelled)
    live = fit(labelled[:500])
    for prior in (SimilarityPrior(), live):
        assert holdout_loss_log(prior, log) == holdout_loss(prior, labelled)
    config = NPOConfig()
    for trained_upto, prior in ((0, SimilarityPrior()), (labelled[499].seq, live)):
        old, old_model = evaluate_candidate(labelled, trained_upto, prior, config)
        new, new_model = evaluate_log(log, trained_upto, prior, config)
        assert new == old
        assert old_model is not None and new_model is not None
        assert np.array_equal(old_model.weights, new_model.weights)


def test_an_evaluation_without_enough_fresh_feedback_fits_nothing() -> None:
    labelled = [ex for ex in _examples(40, 0) if ex.kind is not FeedbackKind.SKIPPED]
    log = LabelledLog.of(labelled)
    old = evaluate_candidate(labelled, labelled[-3].seq, SimilarityPrior(), NPOConfig())
    assert evaluate_log(log, labelled[-3].seq, SimilarityPrior(), NPOConfig()) == old
    assert old[1] is None


def test_monitor_signals_are_the_object_version() -> None:
    rng = np.random.default_rng(5)
    votes = [
        LoggedVote(
            seq,
            kind := KINDS[int(rng.integers(0, 4))],
            alignment_loss(kind, float(rng.uniform(0, 1))),
            None if rng.random() < 0.1 else f"pb-{rng.integers(0, 5)}",
        )
        for seq in range(1, 1500)
    ]
    monitor = MetaMonitor(MonitorConfig())
    assert monitor_signals(monitor, VoteColumns.of(votes)) == monitor.signals(votes)
    monitor.state.retrained_at = 700
    monitor.state.paused = {"pb-1"}
    monitor.state.resumed_at = {"pb-2": 900, "pb-9": 5}
    old, new = monitor.signals(votes), monitor_signals(monitor, VoteColumns.of(votes))
    assert new == old
    assert list(new.playbooks) == list(old.playbooks)  # and in the same order
    empty = monitor_signals(monitor, VoteColumns.of([]))
    assert empty == monitor.signals([])


@pytest.mark.parametrize("scale", [1, 10**9])  # few keys: no sort; sparse keys: np.unique
def test_first_seen_numbers_groups_in_the_order_they_first_come(scale: int) -> None:
    keys = np.array([5, 3, 5, 0, 3, 7, 0], dtype=np.int64) * scale
    group, heads = first_seen(keys)
    assert group.tolist() == [0, 1, 0, 2, 1, 3, 2]
    assert heads.tolist() == [0, 1, 3, 5]
    assert [len(a) for a in first_seen(np.zeros(0, dtype=np.int64))] == [0, 0]
