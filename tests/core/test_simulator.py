from __future__ import annotations

import numpy as np
import pytest

from core.feedback import alignment_loss
from core.policy import Action, MemoisedEngine, PolicyVerdict, Verdict
from core.rego import RegoPolicyEngine
from core.scenario import Scenario
from core.simulator import (
    VARIANTS,
    Population,
    SimConfig,
    _judge,
    expected_loss,
    run,
    simulate,
    summarise,
)

SHORT = SimConfig(episodes=60, tick_every=10)


def test_runs_are_reproducible_per_seed() -> None:
    a, b = run("full", 3, SHORT), run("full", 3, SHORT)
    assert np.array_equal(a.loss, b.loss)
    assert np.array_equal(a.threshold, b.threshold)
    c = run("full", 4, SHORT)
    assert not np.array_equal(a.loss, c.loss)


def test_every_variant_runs_and_summarises() -> None:
    out = simulate(VARIANTS, [0, 1], SHORT)
    assert list(out) == list(VARIANTS)
    for variant, runs in out.items():
        assert [r.seed for r in runs] == [0, 1]
        s = summarise(runs)
        assert 0.0 <= s.final_loss <= 1.0
        assert 0.0 <= s.mean_loss <= 1.0
        assert 0.5 <= s.final_threshold <= 0.9
        assert 0.0 <= s.meta_fidelity <= 1.0
        assert -1.0 <= s.reward <= 1.0
        assert len(runs[0].tick_agree) == SHORT.episodes // SHORT.tick_every, variant
    assert summarise(out["static"]).retrains == 0
    assert set(out["fixed_threshold"][0].threshold) == {0.7}


def test_summary_uses_the_last_tenth_for_final_numbers() -> None:
    r = run("static", 0, SHORT)
    r.loss[:] = 0.0
    r.loss[-6:] = 1.0
    assert summarise([r]).final_loss == pytest.approx(1.0)
    assert summarise([r]).mean_loss == pytest.approx(0.1)


def test_learning_beats_the_static_baseline() -> None:
    config = SimConfig(episodes=300)
    full = summarise([run("full", s, config) for s in range(3)])
    static = summarise([run("static", s, config) for s in range(3)])
    assert full.mean_loss < static.mean_loss
    assert full.reward > static.reward + 0.1


def test_drift_flips_the_truth_for_half_the_playbooks() -> None:
    pop = Population(0, SHORT)
    incident = pop.draw(np.random.default_rng(0))
    before = {m.playbook_id: pop.truth(m.playbook_id, incident.scenario) for m in incident.matches}
    pop.drifted = True
    for pb, q in before.items():
        after = pop.truth(pb, incident.scenario)
        assert after == pytest.approx(1 - q if pb in pop.flipped else q)


def test_the_simulator_consults_the_real_rego_spe(rego_engine: RegoPolicyEngine) -> None:
    spe = MemoisedEngine(rego_engine)
    seen: list[Verdict] = []

    class Recording:
        def evaluate(self, scenario: Scenario, action: Action) -> PolicyVerdict:
            verdict = spe.evaluate(scenario, action)
            seen.append(verdict.verdict)
            return verdict

    result = run("full", 0, SimConfig(episodes=80), Recording())
    assert {Verdict.ALLOW, Verdict.DEFER} <= set(seen)
    assert len(result.loss) == 80


def test_unknown_variant_and_bad_config_are_rejected() -> None:
    with pytest.raises(ValueError, match="variant"):
        run("best", 0, SHORT)
    with pytest.raises(ValueError, match="episodes"):
        SimConfig(episodes=5)
    with pytest.raises(ValueError, match="like_gap"):
        SimConfig(like_gap=0.5, override_gap=0.4)


def test_expected_loss_matches_the_sampled_operator() -> None:
    """The M* reference integrates the same gap rule the simulated operator samples."""
    cfg = SimConfig()
    rng = np.random.default_rng(0)
    scores = np.array([0.95, 0.6, 0.3])
    truths = np.array([0.9, 0.5, 0.2])
    exact = expected_loss(scores, truths, cfg, 0.1)
    losses = []
    for _ in range(20000):
        i = int(rng.integers(3))
        works = rng.uniform() < truths[i]
        kind = _judge(float(scores[i]), bool(works), rng, cfg)
        losses.append(alignment_loss(kind, float(scores[i])))
    assert float(np.mean(losses)) == pytest.approx(exact, abs=0.01)
