"""The paper's Section 5.1 as a study that silence cannot win: a synthetic population with
hidden preferences, a simulated operator, and the full NPO loop driven only through the
public methods the bot's core uses (``NPO.decide``, ``NPO.feedback``, ``NPO.tick``).

Operators (``SimConfig.operator``):
  outcome  judges what happened: likes a surfaced playbook that fits the incident (ground
           truth), overrides one that does not, answers neutral or skips with fixed
           probabilities, and on an abstention confirms the right candidate (when one is
           listed) with some probability. Its parameters are set a priori, never tuned.
  gap      the paper's rule, kept for comparison: the verdict follows the gap between the
           bot's score and the outcome (large → override even when the playbook worked).

Headline: utility per incident (``core.utility``: +1 like on a recommendation, −C override,
−M a missed recommendation the operator then confirms, 0 otherwise), with the help rate
(incidents where a fitting playbook was recommended) and the override rate beside it.

Variants:
  full              Thompson threshold learning from every judged candidate, learned
                    (or rule) meta-monitor, controlled retrains behind a Brier gate
  paper_rule        full, but the bandit learns by the paper's rule (only the arm used,
                    only surfaced recommendations)
  static            no learning at all: similarity prior, untouched bandit, no retrains
  random_threshold  learning, but τ drawn uniformly from the arms
  no_meta           retrains on a fixed schedule, always accepted (no monitor, no gate)
  drift             full with a discounted bandit, on a population whose preferences flip
                    for half the playbooks halfway through the run
  always_abstain    never recommends (shows candidates only): the floor silence earns
  fixed_0.5 … 0.9   learning, but τ fixed at one arm

Meta-alignment: at every tick the ideal action M* is computed from the ground truth (retrain
iff the shadow candidate lowers the true expected Brier score by δ); the rule M and the
learned M are both asked on the same signals, so their κ can be compared tick by tick.

Pure: no I/O. ``bot/reporting/simulation.py`` runs seeds in parallel and writes the CSV and plots.
"""

from __future__ import annotations

import enum
import math
import random
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from core.bandit import BanditConfig, BanditRule
from core.decision import Decision, Outcome
from core.feedback import FeedbackKind
from core.model import FeatureHasher, LogisticModel, Prior, SimilarityPrior
from core.monitor import MonitorAction, MonitorDecision, meta_agreement
from core.npo import NPO, Match, NPOConfig, ThresholdMode
from core.policy import Action, PolicyVerdict, SafetyPolicyEngine, Verdict
from core.scenario import Scenario
from core.utility import UtilityConfig, utility

FloatArray = npt.NDArray[np.float64]

FIXED_ARMS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)
VARIANTS: tuple[str, ...] = (
    "full",
    "paper_rule",
    "static",
    "random_threshold",
    "no_meta",
    "drift",
    "always_abstain",
    *(f"fixed_{a}" for a in FIXED_ARMS),
)


class OperatorModel(enum.StrEnum):
    OUTCOME = "outcome"
    GAP = "gap"


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
    tick_every: int = 20  # incidents per monitor tick (each tick fits a shadow candidate)
    operator: OperatorModel = OperatorModel.OUTCOME
    # outcome operator (chosen before any run, never tuned to the loop)
    neutral_p: float = 0.1  # a recommendation answered "neutral"
    skip_p: float = 0.2  # a recommendation nobody judges
    confirm_p: float = 0.4  # an abstention whose right candidate the operator confirms
    # gap operator (the paper's rule)
    feedback_noise: float = 0.05
    like_gap: float = 0.15
    override_gap: float = 0.35
    neutral_share: float = 0.6  # of moderate gaps; the rest are skipped
    engage_on_abstain: float = 0.3
    # study
    schedule_every: int = 50  # no_meta's fixed retrain schedule, in episodes
    fidelity_delta: float = 0.002  # M*: retrain iff it lowers the true Brier score by this
    eval_draws: int = 100
    catalogue: int = 60  # recurring situations
    zipf: float = 1.0  # their frequency ∝ rank^-zipf
    novel_share: float = 0.2  # incidents never seen before
    utility: UtilityConfig = field(default_factory=UtilityConfig)

    def __post_init__(self) -> None:
        if self.episodes < 10:
            raise ValueError(f"episodes: {self.episodes} must be >= 10")
        if self.candidates < 1:
            raise ValueError(f"candidates: {self.candidates} must be >= 1")
        if self.tick_every < 1:
            raise ValueError(f"tick_every: {self.tick_every} must be >= 1")
        if not 0 <= self.like_gap < self.override_gap:
            raise ValueError("like_gap must be >= 0 and below override_gap")
        for name in ("neutral_p", "skip_p", "confirm_p", "engage_on_abstain", "neutral_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: {value} must be within [0, 1]")
        if self.neutral_p + self.skip_p > 1.0:
            raise ValueError("neutral_p + skip_p must be <= 1")


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
            # A stable per-scenario stream (crc32, not Python's randomised hash); the
            # stdlib generator is seeded in microseconds, numpy's in tens of them.
            r = random.Random(self._seed * 0x1_0000_0000 + zlib.crc32(f"{pb}|{key}".encode()))
            cached = (r.gauss(0.0, 0.3), r.gauss(0.0, 0.12))
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


def _full() -> NPOConfig:
    # The bot's defaults: every judged candidate teaches every arm the utility it would have
    # earned, from a prior at τ*; the paper's rule is the ``paper_rule`` variant.
    return NPOConfig()


def variant_spec(name: str) -> VariantSpec:
    base = _full()
    specs = {
        "full": VariantSpec("full", base),
        "paper_rule": VariantSpec(
            "paper_rule", replace(base, bandit=BanditConfig(rule=BanditRule.PAPER))
        ),
        "static": VariantSpec("static", replace(base, learn=False)),
        "random_threshold": VariantSpec(
            "random_threshold", replace(base, threshold_mode=ThresholdMode.RANDOM)
        ),
        "no_meta": VariantSpec("no_meta", base, meta="schedule"),
        "drift": VariantSpec(
            "drift", replace(base, bandit=replace(base.bandit, discount=0.98)), drift=True
        ),
        "always_abstain": VariantSpec(
            "always_abstain", replace(base, threshold_mode=ThresholdMode.ABSTAIN)
        ),
    }
    for arm in FIXED_ARMS:
        specs[f"fixed_{arm}"] = VariantSpec(
            f"fixed_{arm}",
            replace(base, threshold_mode=ThresholdMode.FIXED, fixed_threshold=arm),
        )
    if name not in specs:
        raise ValueError(f"variant: {name!r} is not one of {', '.join(VARIANTS)}")
    return specs[name]


@dataclass(slots=True)
class RunResult:
    """Per-episode and per-tick series of one (variant, seed) run.

    Tick series hold 1.0 / 0.0 for retrain / hold, NaN where there is nothing to compare
    (``tick_ideal``: too little feedback for a shadow candidate yet)."""

    variant: str
    seed: int
    loss: FloatArray
    utility: FloatArray
    helped: FloatArray  # 1: a fitting playbook was recommended
    overridden: FloatArray
    recommended: FloatArray
    threshold: FloatArray  # NaN: no threshold (always_abstain)
    tick_episode: list[int] = field(default_factory=list)
    tick_ideal: list[float] = field(default_factory=list)
    tick_action: list[float] = field(default_factory=list)  # what M did
    tick_rule: list[float] = field(default_factory=list)  # what the rule M would have done
    tick_learned: list[float] = field(default_factory=list)  # … the learned M (rule until fit)
    retrains: int = 0
    rejected: int = 0


@dataclass(frozen=True, slots=True)
class Judgment:
    """What the simulated operator did with one decision."""

    playbook_id: str | None
    kind: FeedbackKind | None  # None: nobody answered an abstention (no vote)
    surfaced: bool  # the judged candidate was the recommendation
    helped: bool  # a playbook that fits the incident was recommended


@dataclass(frozen=True, slots=True)
class _Draws:
    """The operator's randomness per episode, drawn up front from the seed alone, so every
    variant of a seed meets the same incidents, outcomes and moods."""

    fit: FloatArray  # (episodes, candidates): candidate i fits iff fit < q
    kind: FloatArray  # neutral / skip / neutral-share draw
    confirm: FloatArray  # engagement with an abstention
    noise: FloatArray  # the gap operator's perception noise (standard normal)

    @classmethod
    def make(cls, seed: int, cfg: SimConfig) -> _Draws:
        rng = np.random.default_rng([seed, 6])
        n = cfg.episodes
        return cls(
            rng.uniform(size=(n, cfg.candidates)),
            rng.uniform(size=n),
            rng.uniform(size=n),
            rng.normal(size=n),
        )


def _judge(score: float, works: bool, noise: float, mood: float, cfg: SimConfig) -> FeedbackKind:
    """The gap rule: the operator compares the bot's score with what actually happened."""
    gap = abs(score - (1.0 if works else 0.0)) + cfg.feedback_noise * noise
    if gap < cfg.like_gap:
        return FeedbackKind.LIKE
    if gap > cfg.override_gap:
        return FeedbackKind.OVERRIDE
    return FeedbackKind.NEUTRAL if mood < cfg.neutral_share else FeedbackKind.SKIPPED


def operate(
    decision: Decision, incident: Incident, t: int, pop: Population, d: _Draws, cfg: SimConfig
) -> Judgment:
    """The simulated operator's answer to the decision of episode ``t``."""
    slot = {m.playbook_id: i for i, m in enumerate(incident.matches)}
    scenario = incident.scenario

    def fits(pb: str) -> bool:
        return bool(d.fit[t, slot[pb]] < pop.truth(pb, scenario))

    if decision.outcome is Outcome.RECOMMEND and decision.chosen is not None:
        chosen = decision.chosen
        works = fits(chosen.playbook_id)
        mood = float(d.kind[t])
        if cfg.operator is OperatorModel.GAP:
            kind = _judge(chosen.score, works, float(d.noise[t]), mood, cfg)
        elif mood < cfg.skip_p:
            kind = FeedbackKind.SKIPPED
        elif mood < cfg.skip_p + cfg.neutral_p:
            kind = FeedbackKind.NEUTRAL
        else:
            kind = FeedbackKind.LIKE if works else FeedbackKind.OVERRIDE
        return Judgment(chosen.playbook_id, kind, True, works)
    # An abstention (or a blocked verdict) lists the candidates: the operator may confirm
    # the right one, i.e. the likeliest to fit among those that do.
    fitting = [c for c in decision.candidates if fits(c.playbook_id)]
    engage = cfg.confirm_p if cfg.operator is OperatorModel.OUTCOME else cfg.engage_on_abstain
    if fitting and d.confirm[t] < engage:
        right = max(fitting, key=lambda c: (pop.truth(c.playbook_id, scenario), c.playbook_id))
        return Judgment(right.playbook_id, FeedbackKind.LIKE, False, False)
    return Judgment(None, None, False, False)  # nobody answered the bot's silence


class TruthProbe:
    """The true expected Brier score of a prior on a fixed sample of incidents:
    E[(p − Y)²] = (p − q)² + q(1 − q) with Y ~ Bernoulli(q); the second term is the same for
    every model, so a retrain's true gain is the drop in mean (p − q)². Logistic models are
    scored on precomputed hashed features (the simulator's measuring instrument, not part
    of the loop)."""

    def __init__(self, pop: Population, sample: Sequence[Incident], hasher: FeatureHasher):
        pairs = [(inc.scenario, m) for inc in sample for m in inc.matches]
        self._similarity = np.array([m.similarity for _, m in pairs])
        rows = [hasher.indices(m.playbook_id, s.context()) for s, m in pairs]
        width = max(len(r) for r in rows)
        self._idx = np.zeros((len(rows), width), dtype=np.int64)
        self._mask = np.zeros((len(rows), width))
        for i, r in enumerate(rows):
            self._idx[i, : len(r)] = r
            self._mask[i, : len(r)] = 1.0
        self._pairs = pairs
        self._pop = pop
        self._truth: dict[bool, FloatArray] = {}

    def _q(self) -> FloatArray:
        drifted = self._pop.drifted
        q = self._truth.get(drifted)
        if q is None:
            q = np.array([self._pop.truth(m.playbook_id, s) for s, m in self._pairs])
            self._truth[drifted] = q
        return q

    def brier(self, prior: Prior) -> float:
        if isinstance(prior, LogisticModel) and prior.weights.shape[0] > int(self._idx.max()):
            z = (prior.weights[self._idx] * self._mask).sum(axis=1)
            z += prior.similarity_weight * (self._similarity - 0.5)
            p = 1.0 / (1.0 + np.exp(-z))
        elif isinstance(prior, SimilarityPrior):
            p = np.clip(self._similarity, 0.0, 1.0)
        else:
            p = np.array(
                [prior.predict(m.playbook_id, s.context(), m.similarity) for s, m in self._pairs]
            )
        return float(np.mean((p - self._q()) ** 2))


def _retrains(decision: MonitorDecision | None) -> float:
    if decision is None:
        return math.nan
    return 1.0 if decision.action is MonitorAction.RETRAIN else 0.0


@dataclass(frozen=True, slots=True)
class World:
    """Everything a seed fixes: population, incidents, the M* probe sample, operator draws.
    Built once per seed and shared by its variants (they only read it; the drift variant
    flips ``population.drifted`` and ``run`` restores it)."""

    seed: int
    config: SimConfig
    population: Population
    incidents: tuple[Incident, ...]
    probe: TruthProbe
    draws: _Draws


def world(seed: int, config: SimConfig | None = None) -> World:
    cfg = config or SimConfig()
    pop = Population(seed, cfg)
    incidents_rng = np.random.default_rng([seed, 4])
    incidents = tuple(pop.draw(incidents_rng) for _ in range(cfg.episodes))
    eval_sample = [pop.draw(incidents_rng) for _ in range(cfg.eval_draws)]
    probe = TruthProbe(pop, eval_sample, FeatureHasher(NPOConfig().fit.dim))
    return World(seed, cfg, pop, incidents, probe, _Draws.make(seed, cfg))


def run(
    variant: str,
    seed: int,
    config: SimConfig | None = None,
    spe: SafetyPolicyEngine | None = None,
    shared: World | None = None,
) -> RunResult:
    """One run of one variant. Incidents and operator draws are the same for every variant
    of a seed (pass ``shared`` to build them once for all of them)."""
    cfg = config or SimConfig()
    spec = variant_spec(variant)
    w = shared if shared is not None else world(seed, cfg)
    if w.seed != seed or w.config != cfg:
        raise ValueError("shared: a world built for another seed or configuration")
    pop = w.population
    npo = NPO(spe or AllowAll(), spec.npo, np.random.default_rng([seed, 5]))
    n = cfg.episodes
    result = RunResult(
        variant,
        seed,
        loss=np.zeros(n),
        utility=np.zeros(n),
        helped=np.zeros(n),
        overridden=np.zeros(n),
        recommended=np.zeros(n),
        threshold=np.zeros(n),
    )
    drift_at = n // 2 if spec.drift else n + 1
    try:
        _episodes(npo, spec, cfg, w, drift_at, result)
    finally:
        pop.drifted = False
    result.retrains = npo.retrains_accepted
    result.rejected = npo.retrains_rejected
    return result


def _episodes(
    npo: NPO, spec: VariantSpec, cfg: SimConfig, w: World, drift_at: int, result: RunResult
) -> None:
    pop, draws = w.population, w.draws
    for t, incident in enumerate(w.incidents):
        if t == drift_at:
            pop.drifted = True
        decision = npo.decide(incident.scenario, incident.matches)
        judged = operate(decision, incident, t, pop, draws, cfg)
        if judged.kind is None:
            npo.unanswered(decision)
            result.loss[t] = math.nan  # no judgment: no alignment loss either
        else:
            result.loss[t] = npo.feedback(decision, judged.playbook_id, judged.kind)
        result.utility[t] = utility(judged.surfaced, judged.kind, cfg.utility)
        result.helped[t] = judged.helped
        result.overridden[t] = judged.surfaced and judged.kind is FeedbackKind.OVERRIDE
        result.recommended[t] = decision.outcome is Outcome.RECOMMEND
        tau = decision.arm.threshold if decision.arm else math.nan
        result.threshold[t] = tau if math.isfinite(tau) else math.nan
        if (t + 1) % cfg.tick_every:
            continue
        _tick(npo, spec, cfg, t, w.probe, result)


def _tick(
    npo: NPO, spec: VariantSpec, cfg: SimConfig, t: int, probe: TruthProbe, result: RunResult
) -> None:
    """One monitor tick (or the fixed schedule), scored against the ground-truth M*."""
    live = npo.prior
    if spec.meta == "schedule":
        shadow, candidate = npo.evaluate_retrain()
        # Retrain at the first tick on or after each multiple of ``schedule_every``.
        every, done = cfg.schedule_every, t + 1
        scheduled = spec.npo.learn and done // every > (done - cfg.tick_every) // every
        if scheduled:
            npo.retrain(shadow, force=True)  # the shadow fit is the evaluation: not twice
        action = rule = learned = 1.0 if scheduled else 0.0
    else:
        report = npo.tick()
        candidate = report.candidate
        action = _retrains(report.decision)
        rule = _retrains(report.rule) if report.rule else action
        fallback = report.learned or report.rule  # the learned M defers to the rule until fit
        learned = _retrains(fallback) if fallback else action
    ideal = math.nan  # too little feedback yet for a shadow retrain: no M*
    if candidate is not None:
        gain = probe.brier(live) - probe.brier(candidate)
        ideal = 1.0 if gain >= cfg.fidelity_delta else 0.0
    result.tick_episode.append(t + 1)
    result.tick_ideal.append(ideal)
    result.tick_action.append(action)
    result.tick_rule.append(rule)
    result.tick_learned.append(learned)


def bootstrap_ci(
    values: Sequence[float], level: float = 0.95, resamples: int = 4000
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (deterministic: a fixed resampling seed).
    One value: a zero-width interval."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return (math.nan, math.nan)
    if x.size == 1:
        return (float(x[0]), float(x[0]))
    rng = np.random.default_rng(0)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    return (float(np.quantile(means, tail)), float(np.quantile(means, 1.0 - tail)))


@dataclass(frozen=True, slots=True)
class VariantSummary:
    """Means over seeds, each run weighing the same; intervals over the seeds' means."""

    utility: float
    utility_ci: tuple[float, float]
    utility_early: float  # first quarter of the episodes: how fast a variant gets useful
    utility_early_ci: tuple[float, float]
    utility_late: float  # last quarter: where it settles
    utility_late_ci: tuple[float, float]
    help_rate: float
    override_rate: float
    recommend_rate: float
    retrains: float
    meta_fidelity: float
    meta_base_rate: float
    meta_kappa: float
    meta_kappa_rule: float
    meta_kappa_learned: float
    meta_ticks: int
    mean_loss: float
    final_threshold: float

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if isinstance(value, tuple):
                out[name] = [round(v, 6) for v in value]
            elif isinstance(value, float):
                out[name] = None if math.isnan(value) else round(value, 6)
            else:
                out[name] = value
        return out


def _paired(runs: Sequence[RunResult], series: str) -> tuple[list[bool], list[bool]]:
    """(M retrained, M* says retrain) over every judged tick of every run."""
    m: list[bool] = []
    ideal: list[bool] = []
    for r in runs:
        for a, i in zip(getattr(r, series), r.tick_ideal, strict=True):
            if i == i and a == a:
                m.append(a == 1.0)
                ideal.append(i == 1.0)
    return m, ideal


def summarise(runs: Sequence[RunResult]) -> VariantSummary:
    if not runs:
        raise ValueError("no runs to summarise")
    n = len(runs[0].loss)
    quarter = max(1, n // 4)
    per_seed = [float(r.utility.mean()) for r in runs]
    early = [float(r.utility[:quarter].mean()) for r in runs]
    late = [float(r.utility[-quarter:].mean()) for r in runs]
    acted = meta_agreement(*_paired(runs, "tick_action"))
    rule = meta_agreement(*_paired(runs, "tick_rule"))
    learned = meta_agreement(*_paired(runs, "tick_learned"))
    tail = max(1, n // 10)
    thresholds = [r.threshold[-tail:] for r in runs if not np.isnan(r.threshold[-tail:]).all()]
    return VariantSummary(
        utility=float(np.mean(per_seed)),
        utility_ci=bootstrap_ci(per_seed),
        utility_early=float(np.mean(early)),
        utility_early_ci=bootstrap_ci(early),
        utility_late=float(np.mean(late)),
        utility_late_ci=bootstrap_ci(late),
        help_rate=float(np.mean([r.helped.mean() for r in runs])),
        override_rate=float(np.mean([r.overridden.mean() for r in runs])),
        recommend_rate=float(np.mean([r.recommended.mean() for r in runs])),
        retrains=float(np.mean([r.retrains for r in runs])),
        meta_fidelity=acted.fidelity,
        meta_base_rate=acted.base_rate,
        meta_kappa=acted.kappa,
        meta_kappa_rule=rule.kappa,
        meta_kappa_learned=learned.kappa,
        meta_ticks=acted.ticks,
        mean_loss=float(np.mean([np.nanmean(r.loss) for r in runs])),
        final_threshold=float(np.mean([np.nanmean(t) for t in thresholds]))
        if thresholds
        else math.nan,
    )


def kappa_over_time(runs: Sequence[RunResult], series: str) -> tuple[list[int], list[float]]:
    """Cohen's κ of one M against M* pooled over the runs, cumulative up to each tick
    (NaN until both M* verdicts have occurred)."""
    if not runs:
        return [], []
    episodes = list(runs[0].tick_episode)
    kappas: list[float] = []
    m: list[bool] = []
    ideal: list[bool] = []
    for k in range(len(episodes)):
        for r in runs:
            a, i = getattr(r, series)[k], r.tick_ideal[k]
            if i == i and a == a:
                m.append(a == 1.0)
                ideal.append(i == 1.0)
        both = 0 < sum(ideal) < len(ideal)
        kappas.append(meta_agreement(m, ideal).kappa if both else math.nan)
    return episodes, kappas


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
    cfg = config or SimConfig()
    for seed in seeds:
        shared = world(seed, cfg)
        for variant in variants:
            res = run(variant, seed, cfg, spe, shared)
            out[variant].append(res)
            if progress:
                progress(res)
    return out


def summaries(runs: Mapping[str, Sequence[RunResult]]) -> dict[str, VariantSummary]:
    return {v: summarise(rs) for v, rs in runs.items()}
