"""The paper's Section 5.1 as code: a synthetic population with hidden preferences, feedback
generated from the gap between the system's score and the truth, and the full NPO loop
running through the same core the bot uses.

Variants (ablations and extensions):
  full              Thompson threshold (paper rule), meta-monitored controlled retrains
  static            no learning at all: similarity prior, untouched bandit, no retrains
  fixed_threshold   learning, but τ fixed at 0.7
  random_threshold  learning, but τ drawn uniformly from the arms
  no_meta           retrains on a fixed schedule, always accepted (no monitor, no gate)
  counterfactual    full + ordered-arm counterfactual bandit updates
  drift             full with a discounted bandit, on a population whose preferences flip
                    for half the playbooks halfway through the run

Pure: no I/O. ``bot/`` writes the CSV and plots.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from core.bandit import BanditConfig
from core.decision import Decision, Outcome
from core.feedback import DEFAULT_SKIP_LOSS, FeedbackKind
from core.model import Prior
from core.monitor import MonitorAction, fidelity
from core.npo import NPO, Match, NPOConfig, ThresholdMode
from core.policy import Action, PolicyVerdict, SafetyPolicyEngine, Verdict
from core.scenario import Scenario

FloatArray = npt.NDArray[np.float64]

VARIANTS: tuple[str, ...] = (
    "full",
    "static",
    "fixed_threshold",
    "random_threshold",
    "no_meta",
    "counterfactual",
    "drift",
)

_FAULTS: dict[str, tuple[str, ...]] = {
    "link": ("crc_errors", "flapping", "down"),
    "switch": ("linecard_failure", "high_cpu", "bgp_down"),
    "server": ("disk_failure", "memory_errors", "nic_down"),
    "service": ("dns_failure", "cert_expiry", "capacity"),
}
# (playbook id, action, risk, blast radius, components it serves)
_PLAYBOOKS: tuple[tuple[str, str, str, int, tuple[str, ...]], ...] = (
    ("link-drain", "drain_link", "medium", 1, ("link",)),
    ("link-optic", "replace_optic", "low", 1, ("link",)),
    ("link-bounce", "shutdown_port", "medium", 1, ("link",)),
    ("switch-drain", "drain_device", "high", 4, ("switch",)),
    ("switch-linecard", "replace_linecard", "high", 2, ("switch",)),
    ("switch-failover", "failover", "medium", 2, ("switch", "service")),
    ("server-drain", "drain_server", "medium", 1, ("server",)),
    ("server-reboot", "reboot_device", "medium", 1, ("server", "switch")),
    ("server-nic", "isolate_device", "medium", 1, ("server",)),
    ("service-restart", "restart_service", "low", 1, ("service",)),
    ("service-scale", "scale_out", "low", 2, ("service",)),
    ("diagnostics", "collect_diagnostics", "low", 0, ("link", "switch", "server", "service")),
)
_SEVERITY_P = (0.3, 0.35, 0.25, 0.1)
_REDUNDANCY_P = (0.1, 0.3, 0.4, 0.2)


class AllowAll:
    """An SPE that allows everything: the simulator's default, to isolate learning dynamics."""

    def evaluate(self, scenario: Scenario, action: Action) -> PolicyVerdict:
        return PolicyVerdict(Verdict.ALLOW, (), ("allow_all",))


@dataclass(frozen=True, slots=True)
class SimConfig:
    episodes: int = 400
    candidates: int = 3
    tick_every: int = 10
    feedback_noise: float = 0.05
    like_gap: float = 0.15
    override_gap: float = 0.35
    neutral_share: float = 0.6  # of moderate gaps; the rest are skipped
    engage_on_abstain: float = 0.3
    schedule_every: int = 50  # no_meta's fixed retrain schedule, in episodes
    drift_fraction: float = 0.5
    fidelity_delta: float = 0.005  # M*: retrain iff it lowers the true expected loss by this
    eval_draws: int = 100
    catalogue: int = 60  # recurring situations
    zipf: float = 1.0  # their frequency ∝ rank^-zipf
    novel_share: float = 0.2  # incidents never seen before

    def __post_init__(self) -> None:
        if self.episodes < 10:
            raise ValueError(f"episodes: {self.episodes} must be >= 10")
        if self.candidates < 1:
            raise ValueError(f"candidates: {self.candidates} must be >= 1")
        if self.tick_every < 1:
            raise ValueError(f"tick_every: {self.tick_every} must be >= 1")
        if not 0 <= self.like_gap < self.override_gap:
            raise ValueError("like_gap must be >= 0 and below override_gap")


@dataclass(frozen=True, slots=True)
class Incident:
    scenario: Scenario
    matches: tuple[Match, ...]


class Population:
    """Hidden ground truth: q(playbook, context) = σ(base + Σ feature effects + noise)."""

    def __init__(self, seed: int, config: SimConfig) -> None:
        self.config = config
        rng = np.random.default_rng([seed, 1])
        self._seed = seed
        self.playbooks = {pb[0]: pb for pb in _PLAYBOOKS}
        self.base = {pb: float(rng.normal(0.0, 1.0)) for pb in self.playbooks}
        values = {
            "severity": ("low", "medium", "high", "critical"),
            "redundancy": ("0", "1", "2+"),
            "maintenance_window": ("yes", "no"),
            "hour": ("night", "morning", "afternoon", "evening"),
            "fault_type": tuple(f for fs in _FAULTS.values() for f in fs),
        }
        self.effects = {
            (pb, key, v): float(rng.normal(0.0, 0.8))
            for pb in self.playbooks
            for key, vals in values.items()
            for v in vals
        }
        flip_rng = np.random.default_rng([seed, 2])
        ids = sorted(self.playbooks)
        self.flipped = set(flip_rng.choice(ids, size=len(ids) // 2, replace=False).tolist())
        self.drifted = False
        self._noise: dict[tuple[str, str], tuple[float, float]] = {}
        self._truth: dict[tuple[str, str, bool], float] = {}
        self._catalogue: list[Incident] = []
        self._weights = np.zeros(0)

    def _scenario_noise(self, pb: str, key: str) -> tuple[float, float]:
        cached = self._noise.get((pb, key))
        if cached is None:
            r = np.random.default_rng([self._seed, 3, zlib.crc32(f"{pb}|{key}".encode())])
            cached = (float(r.normal(0.0, 0.3)), float(r.normal(0.0, 0.12)))
            self._noise[(pb, key)] = cached
        return cached

    def truth(self, pb: str, scenario: Scenario) -> float:
        key = (pb, scenario.context_key, self.drifted and pb in self.flipped)
        cached = self._truth.get(key)
        if cached is None:
            z = self.base[pb] + self._scenario_noise(pb, scenario.context_key)[0]
            z += sum(self.effects.get((pb, k, v), 0.0) for k, v in scenario.context().items())
            cached = float(1.0 / (1.0 + np.exp(z if key[2] else -z)))
            self._truth[key] = cached
        return cached

    def similarity(self, pb: str, scenario: Scenario) -> float:
        """Retrieval similarity: mildly informative about the (undrifted) truth."""
        drifted, self.drifted = self.drifted, False
        q = self.truth(pb, scenario)
        self.drifted = drifted
        noise = self._scenario_noise(pb, scenario.context_key)[1]
        return float(np.clip(0.5 + 0.3 * (q - 0.5) + noise, 0.0, 1.0))

    def _fresh(self, rng: np.random.Generator) -> Incident:
        component = str(rng.choice(list(_FAULTS)))
        fault = str(rng.choice(_FAULTS[component]))
        device = f"{component}-{int(rng.integers(10))}"
        scenario = Scenario(
            component=component,
            fault_type=fault,
            severity=str(rng.choice(("low", "medium", "high", "critical"), p=_SEVERITY_P)),
            redundancy=int(rng.choice(4, p=_REDUNDANCY_P)),
            utilisation=round(float(rng.uniform()), 1),
            maintenance_window=bool(rng.uniform() < 0.3),
            hour_of_day=int(rng.integers(24)),
            device=device,
            active_changes=(device,) if rng.uniform() < 0.05 else (),
        )
        eligible = sorted(pb for pb, spec in self.playbooks.items() if component in spec[4])
        chosen = rng.choice(
            eligible, size=min(self.config.candidates, len(eligible)), replace=False
        )
        return Incident(scenario, tuple(self._match(str(pb), scenario) for pb in chosen))

    def draw(self, rng: np.random.Generator) -> Incident:
        """Incidents recur: most come from a catalogue of known situations with Zipf
        frequencies (the same link flaps every week); the rest are new."""
        if not self._catalogue:
            catalogue_rng = np.random.default_rng([self._seed, 7])
            self._catalogue = [self._fresh(catalogue_rng) for _ in range(self.config.catalogue)]
            ranks = np.arange(1, self.config.catalogue + 1, dtype=np.float64)
            weights = ranks**-self.config.zipf
            self._weights = weights / weights.sum()
        if rng.uniform() < self.config.novel_share:
            return self._fresh(rng)
        return self._catalogue[int(rng.choice(len(self._catalogue), p=self._weights))]

    def _match(self, pb: str, scenario: Scenario) -> Match:
        _, action, risk, blast, _ = self.playbooks[pb]
        return Match(
            pb,
            pb.replace("-", " ").title(),
            Action(action, scenario.device, blast, risk),
            self.similarity(pb, scenario),
        )


@dataclass(frozen=True, slots=True)
class VariantSpec:
    name: str
    npo: NPOConfig
    meta: str = "monitor"  # "monitor" | "schedule"
    drift: bool = False


def variant_spec(name: str) -> VariantSpec:
    base = NPOConfig()
    specs = {
        "full": VariantSpec("full", base),
        "static": VariantSpec("static", replace(base, learn=False)),
        "fixed_threshold": VariantSpec(
            "fixed_threshold", replace(base, threshold_mode=ThresholdMode.FIXED)
        ),
        "random_threshold": VariantSpec(
            "random_threshold", replace(base, threshold_mode=ThresholdMode.RANDOM)
        ),
        "no_meta": VariantSpec("no_meta", base, meta="schedule"),
        "counterfactual": VariantSpec(
            "counterfactual", replace(base, bandit=BanditConfig(counterfactual=True))
        ),
        "drift": VariantSpec(
            "drift", replace(base, bandit=BanditConfig(discount=0.98)), drift=True
        ),
    }
    if name not in specs:
        raise ValueError(f"variant: {name!r} is not one of {', '.join(VARIANTS)}")
    return specs[name]


@dataclass(slots=True)
class RunResult:
    """Per-episode and per-tick series of one (variant, seed) run."""

    variant: str
    seed: int
    loss: FloatArray
    reward: FloatArray
    threshold: FloatArray
    tick_episode: list[int] = field(default_factory=list)
    tick_agree: list[float] = field(default_factory=list)  # 1/0: M = M*; NaN: no M* yet
    retrains: int = 0
    rejected: int = 0


def _judge(score: float, works: bool, rng: np.random.Generator, cfg: SimConfig) -> FeedbackKind:
    """The gap rule: the operator compares the bot's score with what actually happened."""
    gap = abs(score - (1.0 if works else 0.0)) + float(rng.normal(0.0, cfg.feedback_noise))
    if gap < cfg.like_gap:
        return FeedbackKind.LIKE
    if gap > cfg.override_gap:
        return FeedbackKind.OVERRIDE
    return FeedbackKind.NEUTRAL if rng.uniform() < cfg.neutral_share else FeedbackKind.SKIPPED


_REWARD = {
    FeedbackKind.LIKE: 1.0,
    FeedbackKind.NEUTRAL: 0.5,
    FeedbackKind.SKIPPED: 0.0,
    FeedbackKind.OVERRIDE: -1.0,
}


def _feedback(
    decision: Decision, pop: Population, rng: np.random.Generator, cfg: SimConfig
) -> tuple[str | None, FeedbackKind, float]:
    """The simulated operator. Whether the playbook works in this incident is drawn from
    the hidden preference q; the verdict follows the gap between the score and that outcome
    (large → override, small → like, moderate → neutral or skipped, with noise)."""
    if decision.outcome is Outcome.RECOMMEND and decision.chosen is not None:
        chosen = decision.chosen
        works = rng.uniform() < pop.truth(chosen.playbook_id, decision.scenario)
        kind = _judge(chosen.score, works, rng, cfg)
        return chosen.playbook_id, kind, _REWARD[kind]
    if decision.outcome is Outcome.ABSTAIN and decision.candidates:
        # The abstention lists the candidates: sometimes an operator likes the right one.
        truths = [pop.truth(c.playbook_id, decision.scenario) for c in decision.candidates]
        best = int(np.argmax(truths))
        if rng.uniform() < cfg.engage_on_abstain and rng.uniform() < truths[best]:
            return decision.candidates[best].playbook_id, FeedbackKind.LIKE, 0.0
    return None, FeedbackKind.SKIPPED, 0.0


def _normal_cdf(x: FloatArray) -> FloatArray:
    erf = np.vectorize(math.erf, otypes=[np.float64])
    result: FloatArray = 0.5 * (1.0 + erf(x / math.sqrt(2.0)))
    return result


def expected_loss(
    scores: FloatArray, truths: FloatArray, cfg: SimConfig, skip_loss: float
) -> float:
    """Alignment loss a prior's scores would earn in expectation under the ground truth:
    the exact counterpart of the production hold-out loss, with no sampling noise."""
    total = np.zeros_like(scores)
    sigma = max(cfg.feedback_noise, 1e-9)
    for outcome, p_outcome in ((1.0, truths), (0.0, 1.0 - truths)):
        gap = np.abs(scores - outcome)
        p_like = _normal_cdf((cfg.like_gap - gap) / sigma)
        p_override = 1.0 - _normal_cdf((cfg.override_gap - gap) / sigma)
        p_mid = 1.0 - p_like - p_override
        loss = (
            p_like * (1.0 - scores)
            + p_override * scores
            + p_mid * cfg.neutral_share * 0.25 * np.abs(scores - 0.5)
            + p_mid * (1.0 - cfg.neutral_share) * skip_loss
        )
        total += p_outcome * loss
    return float(total.mean())


def _true_loss(prior: Prior, pop: Population, sample: Sequence[Incident], cfg: SimConfig) -> float:
    pairs = [(inc.scenario, m) for inc in sample for m in inc.matches]
    scores = np.array([prior.predict(m.playbook_id, s.context(), m.similarity) for s, m in pairs])
    truths = np.array([pop.truth(m.playbook_id, s) for s, m in pairs])
    return expected_loss(scores, truths, cfg, DEFAULT_SKIP_LOSS)


def run(
    variant: str,
    seed: int,
    config: SimConfig | None = None,
    spe: SafetyPolicyEngine | None = None,
) -> RunResult:
    """One run of one variant. Incidents are the same for every variant of a seed."""
    cfg = config or SimConfig()
    spec = variant_spec(variant)
    pop = Population(seed, cfg)
    incidents_rng = np.random.default_rng([seed, 4])
    incidents = [pop.draw(incidents_rng) for _ in range(cfg.episodes)]
    eval_sample = [pop.draw(incidents_rng) for _ in range(cfg.eval_draws)]
    npo = NPO(spe or AllowAll(), spec.npo, np.random.default_rng([seed, 5]))
    fb_rng = np.random.default_rng([seed, 6])
    n = cfg.episodes
    loss, reward, threshold = np.zeros(n), np.zeros(n), np.zeros(n)
    result = RunResult(variant, seed, loss, reward, threshold)
    drift_at = n // 2 if spec.drift else n + 1
    true_loss_live: float | None = None
    for t, incident in enumerate(incidents):
        if t == drift_at:
            pop.drifted = True
            true_loss_live = None
        decision = npo.decide(incident.scenario, incident.matches)
        playbook_id, kind, r = _feedback(decision, pop, fb_rng, cfg)
        loss[t] = npo.feedback(decision, playbook_id, kind)
        reward[t] = r
        threshold[t] = decision.arm.threshold if decision.arm else float("nan")
        if (t + 1) % cfg.tick_every:
            continue
        prior_before = npo.prior
        if spec.meta == "schedule":
            evaluated, candidate = npo.evaluate_retrain()
            scheduled = spec.npo.learn and (t + 1) % cfg.schedule_every == 0
            if scheduled:
                npo.retrain(evaluated, force=True)
            action = MonitorAction.RETRAIN if scheduled else MonitorAction.HOLD
        else:
            report = npo.tick()
            candidate, action = report.candidate, report.decision.action
        agree = float("nan")  # too little feedback yet for a shadow retrain: no M*
        if candidate is not None:
            if true_loss_live is None or npo.prior is not prior_before:
                true_loss_live = _true_loss(prior_before, pop, eval_sample, cfg)
            gain = true_loss_live - _true_loss(candidate, pop, eval_sample, cfg)
            ideal = MonitorAction.RETRAIN if gain >= cfg.fidelity_delta else MonitorAction.HOLD
            agree = fidelity([action], [ideal])
        result.tick_episode.append(t + 1)
        result.tick_agree.append(agree)
        if npo.prior is not prior_before:
            true_loss_live = None
    result.retrains = npo.retrains_accepted
    result.rejected = npo.retrains_rejected
    return result


@dataclass(frozen=True, slots=True)
class VariantSummary:
    final_loss: float
    mean_loss: float
    final_threshold: float
    meta_fidelity: float
    retrains: int
    reward: float

    def as_dict(self) -> dict[str, float | int]:
        return {
            "final_loss": round(self.final_loss, 6),
            "mean_loss": round(self.mean_loss, 6),
            "final_threshold": round(self.final_threshold, 6),
            "meta_fidelity": round(self.meta_fidelity, 6),
            "retrains": self.retrains,
            "reward": round(self.reward, 6),
        }


def summarise(runs: Sequence[RunResult]) -> VariantSummary:
    """Averages over seeds; final_* use the last 10% of episodes; retrains per seed."""
    if not runs:
        raise ValueError("no runs to summarise")
    n = len(runs[0].loss)
    tail = max(1, n // 10)
    agree = [a for r in runs for a in r.tick_agree if a == a]  # NaN: tick without M*
    return VariantSummary(
        final_loss=float(np.mean([r.loss[-tail:].mean() for r in runs])),
        mean_loss=float(np.mean([r.loss.mean() for r in runs])),
        final_threshold=float(np.mean([np.nanmean(r.threshold[-tail:]) for r in runs])),
        meta_fidelity=float(np.mean(agree)) if agree else 0.0,
        retrains=round(float(np.mean([r.retrains for r in runs]))),
        reward=float(np.mean([r.reward.mean() for r in runs])),
    )


def simulate(
    variants: Sequence[str],
    seeds: Sequence[int],
    config: SimConfig | None = None,
    spe: SafetyPolicyEngine | None = None,
    progress: Callable[[RunResult], None] | None = None,
) -> dict[str, list[RunResult]]:
    out: dict[str, list[RunResult]] = {v: [] for v in variants}
    for variant in variants:
        variant_spec(variant)  # fail fast on a bad name
    for seed in seeds:
        for variant in variants:
            res = run(variant, seed, config, spe)
            out[variant].append(res)
            if progress:
                progress(res)
    return out
