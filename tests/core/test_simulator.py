from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from core.decision import Decision, Outcome
from core.feedback import FeedbackKind
from core.model import Example, FeatureHasher, FitConfig, SimilarityPrior, fit
from core.monitor import MonitorConfig, MonitorPolicy
from core.npo import NPO, NPOConfig, ThresholdMode
from core.policy import Action, MemoisedEngine, PolicyVerdict, Verdict
from core.rego import RegoPolicyEngine
from core.scenario import Scenario
from core.simulator import (
    FIXED_ARMS,
    VARIANTS,
    AllowAll,
    Judgment,
    OperatorModel,
    Population,
    SimConfig,
    TruthProbe,
    World,
    bootstrap_ci,
    kappa_over_time,
    operate,
    run,
    simulate,
    summarise,
    world,
)

SHORT = SimConfig(episodes=60, tick_every=10)


def test_runs_are_reproducible_per_seed_and_a_shared_world_changes_nothing() -> None:
    a, b = run("full", 3, SHORT), run("full", 3, SHORT)
    assert np.array_equal(a.loss, b.loss, equal_nan=True)  # NaN: an unanswered abstention
    assert np.array_equal(a.utility, b.utility)
    shared = world(3, SHORT)
    run("drift", 3, SHORT, shared=shared)  # flips the population's truth halfway …
    c = run("full", 3, SHORT, shared=shared)  # … and leaves it as it found it
    assert np.array_equal(a.utility, c.utility)
    assert a.tick_ideal == pytest.approx(c.tick_ideal, nan_ok=True)
    d = run("full", 4, SHORT)
    assert not np.array_equal(a.loss, d.loss)
    with pytest.raises(ValueError, match="another seed"):
        run("full", 4, SHORT, shared=shared)


def test_every_variant_runs_and_summarises() -> None:
    out = simulate(VARIANTS, [0, 1], SHORT)
    assert list(out) == list(VARIANTS)
    low = -SHORT.utility.override_cost
    for variant, runs in out.items():
        assert [r.seed for r in runs] == [0, 1]
        s = summarise(runs)
        assert low <= s.utility_ci[0] <= s.utility <= s.utility_ci[1] <= 1.0, variant
        assert 0.0 <= s.override_rate <= s.recommend_rate <= 1.0
        assert 0.0 <= s.help_rate <= s.recommend_rate
        assert 0.0 <= s.meta_base_rate <= 1.0 and -1.0 <= s.meta_kappa <= 1.0
        assert len(runs[0].tick_episode) == SHORT.episodes // SHORT.tick_every, variant
        doc = s.as_dict()
        for key in ("utility", "utility_ci", "help_rate", "override_rate", "retrains"):
            assert key in doc
    assert summarise(out["static"]).retrains == 0
    for arm in FIXED_ARMS:
        assert set(out[f"fixed_{arm}"][0].threshold) == {arm}


def test_always_abstain_never_recommends_and_pays_for_every_confirmed_miss() -> None:
    r = run("always_abstain", 0, SimConfig(episodes=100))
    assert r.recommended.sum() == 0 and r.helped.sum() == 0 and r.overridden.sum() == 0
    miss = SimConfig().utility.miss_cost
    assert set(np.unique(r.utility)) <= {0.0, -miss}
    assert (r.utility < 0).any()  # the operator confirmed some of its candidates
    assert np.isnan(r.threshold).all()


def _decision(w: World, t: int, mode: ThresholdMode, tau: float = 0.5) -> Decision:
    npo = NPO(AllowAll(), NPOConfig(threshold_mode=mode, fixed_threshold=tau))
    incident = w.incidents[t]
    return npo.decide(incident.scenario, incident.matches)


def _with_draws(w: World, t: int, **values: Any) -> World:
    draws = w.draws
    arrays = {name: getattr(draws, name).copy() for name in ("fit", "kind", "confirm", "noise")}
    for name, value in values.items():
        arrays[name][t] = value
    return replace(w, draws=type(draws)(**arrays))


def test_the_outcome_operator_judges_whether_the_playbook_fits() -> None:
    cfg = SimConfig(episodes=20)
    w = world(0, cfg)
    decision = _decision(w, 0, ThresholdMode.FIXED)
    assert decision.outcome is Outcome.RECOMMEND and decision.chosen is not None
    incident = w.incidents[0]

    def judged(ww: World) -> Judgment:
        return operate(decision, incident, 0, ww.population, ww.draws, cfg)

    engaged = cfg.skip_p + cfg.neutral_p + 0.01  # a mood that judges
    fits = judged(_with_draws(w, 0, fit=0.0, kind=engaged))  # u = 0 < q: it fits
    assert (fits.kind, fits.surfaced, fits.helped) == (FeedbackKind.LIKE, True, True)
    misfit = judged(_with_draws(w, 0, fit=1.0, kind=engaged))  # u = 1 > q: it does not
    assert (misfit.kind, misfit.helped) == (FeedbackKind.OVERRIDE, False)
    assert judged(_with_draws(w, 0, fit=0.0, kind=0.0)).kind is FeedbackKind.SKIPPED
    neutral = judged(_with_draws(w, 0, fit=0.0, kind=cfg.skip_p + 0.001))
    assert neutral.kind is FeedbackKind.NEUTRAL and neutral.helped  # it was still the right one


def test_the_outcome_operator_confirms_the_right_candidate_of_an_abstention() -> None:
    cfg = SimConfig(episodes=20)
    w = world(0, cfg)
    decision = _decision(w, 0, ThresholdMode.ABSTAIN)
    assert decision.outcome is Outcome.ABSTAIN
    incident = w.incidents[0]
    confirmed = operate(
        decision, incident, 0, w.population, _with_draws(w, 0, fit=0.0, confirm=0.0).draws, cfg
    )
    pop = w.population
    best = max(incident.matches, key=lambda m: pop.truth(m.playbook_id, incident.scenario))
    assert (confirmed.playbook_id, confirmed.kind) == (best.playbook_id, FeedbackKind.LIKE)
    assert not confirmed.surfaced and not confirmed.helped
    busy = _with_draws(w, 0, fit=0.0, confirm=cfg.confirm_p + 0.01)
    assert operate(decision, incident, 0, pop, busy.draws, cfg).playbook_id is None
    nothing_fits = _with_draws(w, 0, fit=1.0, confirm=0.0)
    assert operate(decision, incident, 0, pop, nothing_fits.draws, cfg).playbook_id is None


def test_the_gap_operator_overrides_a_playbook_that_worked_at_a_modest_score() -> None:
    """Why the gap rule is kept only as a labelled comparison: it punishes a score of 0.6
    for a playbook that worked (|0.6 − 1| > 0.35), which the outcome operator never does."""
    cfg = SimConfig(episodes=20, operator=OperatorModel.GAP)
    base = world(0, cfg)
    t, decision = next(
        (t, d)
        for t in range(cfg.episodes)
        if (d := _decision(base, t, ThresholdMode.FIXED)).chosen is not None
        and d.chosen.score < 0.6
    )
    w = _with_draws(base, t, fit=0.0, noise=0.0)  # it fits, and the operator sees it plainly
    judged = operate(decision, w.incidents[t], t, w.population, w.draws, cfg)
    assert judged.helped and judged.kind is FeedbackKind.OVERRIDE


def test_utility_is_what_the_operator_made_of_each_decision() -> None:
    r = run("fixed_0.5", 0, SimConfig(episodes=100))
    c = SimConfig().utility
    assert ((r.utility == -c.override_cost) == (r.overridden == 1)).all()
    assert (r.utility[r.recommended == 0] <= 0).all()  # an abstention never earns
    assert (r.helped <= r.recommended).all()


def test_bootstrap_interval_covers_the_mean_and_narrows_with_more_seeds() -> None:
    rng = np.random.default_rng(1)
    few, many = rng.normal(0.2, 0.1, 10).tolist(), rng.normal(0.2, 0.1, 200).tolist()
    lo, hi = bootstrap_ci(few)
    assert lo < float(np.mean(few)) < hi
    lo2, hi2 = bootstrap_ci(many)
    assert hi2 - lo2 < hi - lo
    assert bootstrap_ci([0.3]) == (0.3, 0.3)
    assert bootstrap_ci(few) == (lo, hi)  # deterministic


def test_the_truth_probe_scores_a_perfect_prior_zero_and_matches_predict() -> None:
    w = world(2, SHORT)
    pop = w.population
    sample = w.incidents[:30]
    probe = TruthProbe(pop, sample, FeatureHasher(FitConfig().dim))
    truth = {
        (m.playbook_id, tuple(sorted(i.scenario.context().items()))): pop.truth(
            m.playbook_id, i.scenario
        )
        for i in sample
        for m in i.matches
    }

    class Oracle:
        def predict(self, playbook_id: str, context: Mapping[str, str], similarity: float) -> float:
            return truth[(playbook_id, tuple(sorted(context.items())))]

    assert probe.brier(Oracle()) == pytest.approx(0.0, abs=1e-12)
    assert probe.brier(SimilarityPrior()) > 0.0
    examples = [
        Example(m.playbook_id, inc.scenario.context(), m.similarity, kind, k)
        for k, inc in enumerate(w.incidents)
        for m, kind in zip(inc.matches, (FeedbackKind.LIKE, FeedbackKind.OVERRIDE), strict=False)
    ]
    model = fit(examples)

    class Slow:  # the same model through its public predict: the probe's fast path agrees
        def predict(self, playbook_id: str, context: Mapping[str, str], similarity: float) -> float:
            return model.predict(playbook_id, context, similarity)

    assert probe.brier(model) == pytest.approx(probe.brier(Slow()), abs=1e-12)


def test_kappa_over_time_waits_for_both_ideal_verdicts() -> None:
    r = run("full", 0, SimConfig(episodes=200))
    episodes, kappas = kappa_over_time([r], "tick_rule")
    assert episodes == r.tick_episode
    first = next(k for k, i in enumerate(r.tick_ideal) if i == i)
    assert all(math.isnan(k) for k in kappas[:first])
    assert all(-1.0 <= k <= 1.0 for k in kappas if k == k)


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
    with pytest.raises(ValueError, match="confirm_p"):
        SimConfig(confirm_p=1.5)
    with pytest.raises(ValueError, match="neutral_p"):
        SimConfig(neutral_p=0.6, skip_p=0.6)


@pytest.mark.slow
def test_the_default_monitor_is_the_one_with_the_higher_kappa() -> None:
    """Both monitors are asked at every tick of the same runs; the default must be the one
    that agrees better with the ground-truth M* beyond chance (the study's 30 seeds: fewer
    disagree with each other, the two are close)."""
    runs = simulate(["full"], range(30), SimConfig())["full"]
    s = summarise(runs)
    kappa = {MonitorPolicy.RULE: s.meta_kappa_rule, MonitorPolicy.LEARNED: s.meta_kappa_learned}
    assert MonitorConfig().policy is max(kappa, key=kappa.__getitem__)
    assert s.meta_kappa == pytest.approx(kappa[MonitorConfig().policy])  # it is what acted


def test_no_meta_retrains_on_its_schedule_whatever_the_tick_cadence() -> None:
    cfg = SimConfig(episodes=200)  # ticks every 20, schedule every 50
    r = run("no_meta", 0, cfg)
    retrained_at = [e for e, a in zip(r.tick_episode, r.tick_action, strict=True) if a == 1.0]
    assert retrained_at == [60, 100, 160, 200]  # the first tick on or after each 50
    assert r.retrains == len(retrained_at)
