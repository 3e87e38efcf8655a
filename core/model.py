"""The retrain model: P(like | context, playbook, similarity) fitted on the feedback log.

A weighted logistic regression on hashed one-hot features, in numpy. Why this and not a
bigger learner: its output is a calibrated probability the blend can mix with local
scores, it is convex (a retrain is deterministic and cannot get stuck), soft labels
(neutral = 0.5 at weight 0.25) are native to its loss, and with identical rows folded into
sufficient statistics a fit on a million feedback rows costs as much as one on the few
thousand distinct scenarios they contain.

Features: bias, each context feature, the playbook, every playbook × context-feature pair
(so "operators reject link drains off-peak" is expressible) and the retrieval similarity.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from core.feedback import FeedbackKind, signal

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class Prior(Protocol):
    """Anything that gives the prior P(like) of a playbook in a context."""

    def predict(self, playbook_id: str, context: Mapping[str, str], similarity: float) -> float:
        """P(like) in [0, 1]."""
        ...


class SimilarityPrior:
    """Before any feedback exists, trust retrieval: the prior is the similarity itself."""

    def predict(self, playbook_id: str, context: Mapping[str, str], similarity: float) -> float:
        return float(min(1.0, max(0.0, similarity)))


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled row of the feedback log."""

    playbook_id: str
    context: Mapping[str, str]
    similarity: float
    kind: FeedbackKind
    seq: int = 0  # learning step of the vote: orders the log, marks what a model has seen


@dataclass(frozen=True, slots=True)
class FitConfig:
    dim: int = 1 << 14
    l2: float = 1e-3
    learning_rate: float = 0.1
    max_iter: int = 150
    tol: float = 1e-4
    similarity_bins: int = 20
    # Up to this many distinct rows the exact solver (Newton) is cheaper than Adam's fixed
    # budget of steps; above it, a Newton step (cubic in the rows) is not.
    exact_max_rows: int = 256
    # Above that, Newton in the features while they are at most this many (a step solves a
    # features × features system); Adam past both.
    exact_max_features: int = 2048

    def __post_init__(self) -> None:
        if self.dim < 16 or self.dim & (self.dim - 1):
            raise ValueError(f"dim: {self.dim} must be a power of two >= 16")
        if self.l2 < 0:
            raise ValueError(f"l2: {self.l2} must be >= 0")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate: {self.learning_rate} must be > 0")
        if self.max_iter < 1:
            raise ValueError(f"max_iter: {self.max_iter} must be >= 1")
        if self.similarity_bins < 1:
            raise ValueError(f"similarity_bins: {self.similarity_bins} must be >= 1")
        if self.exact_max_rows < 0:
            raise ValueError(f"exact_max_rows: {self.exact_max_rows} must be >= 0")
        if self.exact_max_features < 0:
            raise ValueError(f"exact_max_features: {self.exact_max_features} must be >= 0")


def feature_names(playbook_id: str, context: Mapping[str, str]) -> list[str]:
    pb = f"pb={playbook_id}"
    names = ["bias", pb]
    for key in sorted(context):
        item = f"{key}={context[key]}"
        names.append(item)
        names.append(f"{pb}&{item}")
    return names


ContextItems = tuple[tuple[str, str], ...]


class FeatureHasher:
    """Hashed feature indices per (playbook, context), cached: successive model versions
    share one hasher, so a scenario is hashed once per process, not once per retrain."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._cache: dict[tuple[str, ContextItems], list[int]] = {}

    def indices(self, playbook_id: str, context: Mapping[str, str]) -> list[int]:
        return self.indices_of(playbook_id, tuple(sorted(context.items())))

    def indices_of(self, playbook_id: str, items: ContextItems) -> list[int]:
        """``indices`` of a context given as its items sorted by key (no re-sorting)."""
        key = (playbook_id, items)
        cached = self._cache.get(key)
        if cached is None:
            mask = self.dim - 1
            cached = [
                zlib.crc32(name.encode("utf-8")) & mask
                for name in feature_names(playbook_id, dict(items))
            ]
            self._cache[key] = cached
        return cached


@dataclass(slots=True)
class LogisticModel:
    """Weights of a fitted model; ``predict`` is cheap and cached per scenario."""

    weights: FloatArray
    similarity_weight: float
    config: FitConfig
    trained_on: int = 0
    hasher: FeatureHasher | None = field(default=None, repr=False, compare=False)
    _cache: dict[tuple[str, ContextItems], float] = field(
        default_factory=dict, repr=False, compare=False
    )

    def logit_without_similarity(self, playbook_id: str, context: Mapping[str, str]) -> float:
        key = (playbook_id, tuple(sorted(context.items())))
        cached = self._cache.get(key)
        if cached is None:
            if self.hasher is None or self.hasher.dim != self.config.dim:
                self.hasher = FeatureHasher(self.config.dim)
            cached = float(self.weights[self.hasher.indices(playbook_id, context)].sum())
            self._cache[key] = cached
        return cached

    def predict(self, playbook_id: str, context: Mapping[str, str], similarity: float) -> float:
        z = self.logit_without_similarity(playbook_id, context) + self.similarity_weight * (
            similarity - 0.5
        )
        return float(1.0 / (1.0 + np.exp(-z)))

    def to_dict(self) -> dict[str, object]:
        nonzero = np.flatnonzero(self.weights)
        return {
            "dim": self.config.dim,
            "l2": self.config.l2,
            "indices": nonzero.tolist(),
            "values": self.weights[nonzero].tolist(),
            "similarity_weight": self.similarity_weight,
            "trained_on": self.trained_on,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> LogisticModel:
        dim = int(data["dim"])  # type: ignore[call-overload]
        config = FitConfig(dim=dim, l2=float(data["l2"]))  # type: ignore[arg-type]
        weights = np.zeros(dim)
        weights[np.asarray(data["indices"], dtype=np.int64)] = np.asarray(
            data["values"], dtype=np.float64
        )
        return cls(
            weights=weights,
            similarity_weight=float(data["similarity_weight"]),  # type: ignore[arg-type]
            config=config,
            trained_on=int(data["trained_on"]),  # type: ignore[call-overload]
        )


@dataclass(frozen=True, slots=True)
class _Design:
    """Distinct rows with their summed weights (W) and weighted labels (WY). A row is a
    scenario (playbook and context: its hashed features) in one similarity bin."""

    scenario_indices: IntArray  # (scenarios, features per scenario), padded with -1
    scenario: IntArray  # the scenario of each row
    similarity: FloatArray  # centred similarity per row
    total_weight: FloatArray
    weighted_label: FloatArray
    examples: int

    @classmethod
    def empty(cls) -> _Design:
        nothing = np.zeros(0)
        none = np.zeros(0, dtype=np.int64)
        return cls(np.zeros((0, 1), dtype=np.int64), none, nothing, nothing, nothing, 0)


def _padded(hashed: Sequence[list[int]]) -> IntArray:
    """Each scenario's feature indices as a row, rows with fewer padded with -1 (fit()
    maps padding to a dummy slot)."""
    width = max(len(row) for row in hashed)
    out = np.full((len(hashed), width), -1, dtype=np.int64)
    for i, row in enumerate(hashed):
        out[i, : len(row)] = row
    return out


def _design(examples: Iterable[Example], config: FitConfig, hasher: FeatureHasher) -> _Design:
    rows: dict[tuple[str, tuple[tuple[str, str], ...], int], list[float]] = {}
    count = 0
    bins = config.similarity_bins
    # A log shares few context mappings among many votes (the reader parses each distinct
    # context once): sort each mapping's items once, not once per vote. Keyed by identity;
    # the entry holds the mapping, so its id cannot be reused by another during the loop.
    items_of: dict[int, tuple[Mapping[str, str], tuple[tuple[str, str], ...]]] = {}
    for ex in examples:
        sig = signal(ex.kind)
        if sig.label is None:
            continue
        count += 1
        sim_bin = round(min(1.0, max(0.0, ex.similarity)) * bins)
        seen = items_of.get(id(ex.context))
        if seen is None:
            seen = items_of[id(ex.context)] = (ex.context, tuple(sorted(ex.context.items())))
        items = seen[1]
        key = (ex.playbook_id, items, sim_bin)
        acc = rows.get(key)
        if acc is None:
            rows[key] = [sig.weight, sig.weight * sig.label]
        else:
            acc[0] += sig.weight
            acc[1] += sig.weight * sig.label
    if not rows:
        return _Design.empty()
    scenarios: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
    scenario = np.array(
        [scenarios.setdefault((pb, ctx), len(scenarios)) for pb, ctx, _ in rows], dtype=np.int64
    )
    hashed = _padded([hasher.indices_of(pb, ctx) for pb, ctx in scenarios])
    sims = np.array([k[2] / bins - 0.5 for k in rows], dtype=np.float64)
    stats = np.array(list(rows.values()), dtype=np.float64)
    return _Design(hashed, scenario, sims, stats[:, 0], stats[:, 1], count)


def fit(
    examples: Iterable[Example],
    config: FitConfig | None = None,
    hasher: FeatureHasher | None = None,
) -> LogisticModel:
    """Minimise the weighted cross-entropy plus an L2 penalty.

    Only the hashed features that occur in the data are optimised (the others stay at zero,
    where the L2 penalty would keep them anyway), so a fit costs in the number of distinct
    scenarios, not in the hashing dimension. The optimum is found by Newton's method, to
    ``tol``, in the span of the rows up to ``exact_max_rows`` distinct rows (``_newton``),
    else in the features up to ``exact_max_features`` of them (``_newton_features``); a
    log past both is fitted by full-batch Adam (``_adam``: at most ``max_iter`` steps).
    Deterministic: same examples, same weights. Skipped feedback carries no label and is
    ignored.
    """
    config = config or FitConfig()
    if hasher is None or hasher.dim != config.dim:
        hasher = FeatureHasher(config.dim)
    return _fit_design(_design(examples, config, hasher), config, hasher)


def _fit_design(design: _Design, config: FitConfig, hasher: FeatureHasher) -> LogisticModel:
    """The solver the design's size calls for: shared by ``fit`` and ``fit_log``."""
    weights = np.zeros(config.dim)
    if design.examples == 0:
        return LogisticModel(weights, 0.0, config, 0, hasher)
    problem = _Problem.of(design)
    if len(problem.w) <= config.exact_max_rows:
        solve = _newton
    elif len(problem.used) <= config.exact_max_features:
        solve = _newton_features
    else:
        solve = _adam
    theta = solve(problem, config)
    weights[problem.used] = theta[: len(problem.used)]
    return LogisticModel(weights, float(theta[-1]), config, design.examples, hasher)


@dataclass(frozen=True, slots=True)
class _Problem:
    """The design in the solvers' terms: row features as local indices into theta, whose
    layout is [used features..., padding (always 0), similarity weight]; weights and
    weighted labels normalised to sum 1, so the L2 penalty means the same at any log size."""

    used: IntArray  # hashed index of each local feature
    groups: IntArray  # (scenarios, features per scenario), padding -> the dummy slot
    scenario: IntArray  # the scenario of each row
    idx: IntArray  # (rows, features per row): groups[scenario]
    similarity: FloatArray
    w: FloatArray
    wy: FloatArray

    @classmethod
    def of(cls, design: _Design) -> _Problem:
        present = design.scenario_indices >= 0
        used, local = np.unique(design.scenario_indices[present], return_inverse=True)
        groups: IntArray = np.full(design.scenario_indices.shape, len(used), dtype=np.int64)
        groups[present] = local
        total = float(design.total_weight.sum())
        return cls(
            used,
            groups,
            design.scenario,
            groups[design.scenario],
            design.similarity,
            design.total_weight / total,
            design.weighted_label / total,
        )

    def dense(self) -> FloatArray:
        """The design matrix, (rows, len(theta)): feature counts, then the similarity."""
        rows, per_row = self.idx.shape
        matrix = np.zeros((rows, len(self.used) + 2))
        np.add.at(matrix, (np.repeat(np.arange(rows), per_row), self.idx.ravel()), 1.0)
        matrix[:, len(self.used)] = 0.0  # padding is no feature
        matrix[:, -1] = self.similarity
        return matrix

    def objective(self, z: FloatArray, l2: float, squared_norm: float) -> float:
        loss = (self.w * np.logaddexp(0.0, z) - self.wy * z).sum()
        return float(loss + 0.5 * l2 * squared_norm)


def _halved_step(
    x: FloatArray,
    step: FloatArray,
    value: float,
    at: Callable[[FloatArray], tuple[FloatArray, float]],
) -> tuple[FloatArray, FloatArray, float]:
    """x - t·step with t halved from 1 until the objective does not rise (or t < 1e-4):
    the new point, its logits and its objective (``at`` gives the last two). Keeps Newton
    monotone on separable data."""
    t = 1.0
    while True:
        trial = x - t * step
        z, trial_value = at(trial)
        if trial_value <= value or t < 1e-4:
            return trial, z, trial_value
        t *= 0.5


def _newton(problem: _Problem, config: FitConfig) -> FloatArray:
    """Newton's method in the span of the rows: at the optimum theta = Xᵀα (the penalty
    keeps theta out of the design's null space), so with K = XXᵀ each step solves a
    rows × rows system, (DK + λI)Δα = r + λα, whatever the number of features. Halving
    the step until the objective does not rise keeps it monotone on separable data."""
    x = problem.dense()
    gram = x @ x.T
    l2 = config.l2
    ridge = l2 * np.eye(len(problem.w))

    def at(trial: FloatArray) -> tuple[FloatArray, float]:
        z_trial: FloatArray = gram @ trial
        return z_trial, problem.objective(z_trial, l2, float(trial @ z_trial))

    alpha = np.zeros(len(problem.w))
    z = np.zeros(len(problem.w))
    value = problem.objective(z, l2, 0.0)
    for _ in range(config.max_iter):
        p = 1.0 / (1.0 + np.exp(-z))
        g = problem.w * p - problem.wy + l2 * alpha  # the gradient in theta is Xᵀg
        if float(np.abs(x.T @ g).max()) < config.tol:
            break
        curvature = problem.w * p * (1.0 - p)
        step = np.asarray(np.linalg.solve(curvature[:, None] * gram + ridge, g), dtype=np.float64)
        alpha, z, value = _halved_step(alpha, step, value, at)
    theta: FloatArray = x.T @ alpha
    return theta


def _sums(keys: IntArray, weights: FloatArray, length: int) -> FloatArray:
    """The weights summed per key (``bincount``), as floats."""
    return np.asarray(np.bincount(keys, weights, length), dtype=np.float64)


def _newton_features(problem: _Problem, config: FitConfig) -> FloatArray:
    """Newton's method in the features, for many rows over few features (a large log of
    few scenarios). A row is a scenario's features plus its similarity bin, so the
    Hessian XᵀDX is summed per scenario first (its features' outer product, weighted by
    the curvature of its bins), then spread over the scenario's feature pairs: a step
    costs a handful of array operations over the rows and one features × features solve,
    whatever the number of rows. About eight steps reach ``tol``, where Adam takes its
    whole budget; the step is halved until the objective does not rise."""
    groups, scenario = problem.groups, problem.scenario
    n_scenarios, per_row = groups.shape
    size = len(problem.used) + 2  # [features..., dummy (always 0), similarity weight]
    dummy, sim_slot = size - 2, size - 1
    flat = groups.ravel()
    pairs = (groups[:, :, None] * size + groups[:, None, :]).ravel()
    sims, w, wy, l2 = problem.similarity, problem.w, problem.wy, config.l2

    def logits(theta: FloatArray) -> FloatArray:
        z: FloatArray = theta[groups].sum(axis=1)[scenario] + theta[sim_slot] * sims
        return z

    def per_feature(per_scenario: FloatArray) -> FloatArray:
        return _sums(flat, np.repeat(per_scenario, per_row), size)

    def at(trial: FloatArray) -> tuple[FloatArray, float]:
        z_trial = logits(trial)
        return z_trial, problem.objective(z_trial, l2, float(trial @ trial))

    theta = np.zeros(size)
    z = logits(theta)
    value = problem.objective(z, l2, 0.0)
    for _ in range(config.max_iter):
        p = 1.0 / (1.0 + np.exp(-z))
        residual = w * p - wy
        grad = per_feature(_sums(scenario, residual, n_scenarios))
        grad[sim_slot] = float(residual @ sims)
        grad += l2 * theta
        grad[dummy] = 0.0
        if float(np.abs(grad).max()) < config.tol:
            break
        curvature = w * p * (1.0 - p)
        by_scenario = _sums(scenario, curvature, n_scenarios)
        hessian = _sums(pairs, np.repeat(by_scenario, per_row * per_row), size * size)
        hessian = hessian.reshape(size, size)
        cross = per_feature(_sums(scenario, curvature * sims, n_scenarios))
        hessian[sim_slot, :] = cross
        hessian[:, sim_slot] = cross
        hessian[sim_slot, sim_slot] = float(curvature @ (sims * sims))
        hessian[dummy, :] = 0.0
        hessian[:, dummy] = 0.0
        hessian[np.diag_indices(size)] += l2
        hessian[dummy, dummy] = 1.0
        step = np.asarray(np.linalg.solve(hessian, grad), dtype=np.float64)
        theta, z, value = _halved_step(theta, step, value, at)
    return theta


def _adam(problem: _Problem, config: FitConfig) -> FloatArray:
    """Full-batch Adam from zero, stopped at ``tol`` or after ``max_iter`` steps: each step
    is linear in the rows, for logs too large for Newton's method."""
    idx, sims, w, wy = problem.idx, problem.similarity, problem.w, problem.wy
    n_used = len(problem.used)
    per_row = idx.shape[1]
    flat = idx.ravel()
    theta = np.zeros(n_used + 2)  # [features..., dummy (always 0), similarity weight]
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, config.max_iter + 1):
        z = theta[idx].sum(axis=1) + theta[-1] * sims
        p = 1.0 / (1.0 + np.exp(-z))
        residual = w * p - wy
        grad = np.empty_like(theta)
        grad[:-1] = np.bincount(flat, weights=np.repeat(residual, per_row), minlength=n_used + 1)
        grad[-1] = float(residual @ sims)
        grad += config.l2 * theta
        grad[n_used] = 0.0
        if float(np.abs(grad).max()) < config.tol:
            break
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad * grad
        theta -= (
            config.learning_rate * (m / (1 - beta1**step)) / (np.sqrt(v / (1 - beta2**step)) + eps)
        )
    return theta


def weighted_log_loss(model: Prior, examples: Sequence[Example]) -> float:
    """Mean weighted cross-entropy of a prior on labelled examples (for tests and reports)."""
    total = 0.0
    weight = 0.0
    for ex in examples:
        sig = signal(ex.kind)
        if sig.label is None:
            continue
        p = min(1 - 1e-9, max(1e-9, model.predict(ex.playbook_id, ex.context, ex.similarity)))
        total -= sig.weight * (sig.label * np.log(p) + (1 - sig.label) * np.log(1 - p))
        weight += sig.weight
    return float(total / weight) if weight else 0.0


@dataclass(frozen=True, slots=True)
class LabelledLog:
    """The labelled feedback log as columns, in log order (by seq): what ``fit`` reads of
    each ``Example``, without a million Python objects. Rows refer to the distinct
    playbooks and contexts by index; every row carries a label (skips are left out)."""

    playbooks: Sequence[str]
    contexts: Sequence[Mapping[str, str]]
    playbook: IntArray  # index into playbooks, per row
    context: IntArray  # index into contexts, per row
    similarity: FloatArray
    label: FloatArray
    weight: FloatArray
    seq: IntArray

    def __len__(self) -> int:
        return len(self.seq)

    def rows(self, start: int, stop: int) -> LabelledLog:
        """Rows ``start:stop`` (views, not copies), sharing the distinct values."""
        part = slice(start, stop)
        return LabelledLog(
            self.playbooks,
            self.contexts,
            self.playbook[part],
            self.context[part],
            self.similarity[part],
            self.label[part],
            self.weight[part],
            self.seq[part],
        )

    @classmethod
    def of(cls, examples: Sequence[Example]) -> LabelledLog:
        """The columns of labelled examples (for tests and small logs)."""
        labelled = [ex for ex in examples if signal(ex.kind).label is not None]
        playbooks: dict[str, int] = {}
        contexts: dict[int, int] = {}
        distinct: list[Mapping[str, str]] = []
        pb: list[int] = []
        ctx: list[int] = []
        for ex in labelled:
            pb.append(playbooks.setdefault(ex.playbook_id, len(playbooks)))
            code = contexts.get(id(ex.context))
            if code is None:
                code = contexts[id(ex.context)] = len(distinct)
                distinct.append(ex.context)
            ctx.append(code)
        signals = [signal(ex.kind) for ex in labelled]
        return cls(
            tuple(playbooks),
            tuple(distinct),
            np.array(pb, dtype=np.int64),
            np.array(ctx, dtype=np.int64),
            np.array([ex.similarity for ex in labelled], dtype=np.float64),
            np.array([s.label for s in signals], dtype=np.float64),
            np.array([s.weight for s in signals], dtype=np.float64),
            np.array([ex.seq for ex in labelled], dtype=np.int64),
        )


def first_seen(keys: IntArray) -> tuple[IntArray, IntArray]:
    """Group equal non-negative keys, the groups numbered in the order their first key
    comes: (each key's group, each group's first position). Without a sort when the keys
    are few compared with the rows (a tick's scenarios), with one otherwise."""
    n = len(keys)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    span = int(keys.max()) + 1
    if span <= 4 * n + 4096:
        first = np.full(span, n, dtype=np.int64)
        np.minimum.at(first, keys, np.arange(n, dtype=np.int64))
        present = np.flatnonzero(first < n)
        heads = np.sort(first[present])
        number = np.empty(span, dtype=np.int64)
        number[keys[heads]] = np.arange(len(heads), dtype=np.int64)
        return number[keys], heads
    _, index, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(index, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse.ravel()], index[order]


def _log_design(log: LabelledLog, config: FitConfig, hasher: FeatureHasher) -> _Design:
    """``_design`` on columns: the same distinct rows, in the same (first-seen) order, with
    the same sums added in the same order (``bincount`` adds row by row), so a fit on it
    gives the same weights to the last bit."""
    if len(log) == 0:
        return _Design.empty()
    # Contexts that are equal as mappings are one scenario, as in _design.
    canonical: dict[tuple[tuple[str, str], ...], int] = {}
    canon = np.array(
        [canonical.setdefault(tuple(sorted(c.items())), len(canonical)) for c in log.contexts],
        dtype=np.int64,
    )
    bins = config.similarity_bins
    # round() and rint() both round half to even: the same bins.
    sim_bin = np.rint(np.clip(log.similarity, 0.0, 1.0) * bins).astype(np.int64)
    pair = log.playbook * len(canonical) + canon[log.context]
    group, heads = first_seen(pair * (bins + 1) + sim_bin)
    total = np.asarray(np.bincount(group, log.weight, len(heads)), dtype=np.float64)
    weighted = np.asarray(np.bincount(group, log.weight * log.label, len(heads)), np.float64)
    # Hash each (playbook, context) once, not once per similarity bin.
    pair_of, pair_heads = first_seen(pair[heads])
    hashed = [
        hasher.indices(log.playbooks[p], log.contexts[c])
        for p, c in zip(
            log.playbook[heads[pair_heads]].tolist(),
            log.context[heads[pair_heads]].tolist(),
            strict=True,
        )
    ]
    sims = sim_bin[heads].astype(np.float64) / bins - 0.5
    return _Design(_padded(hashed), pair_of, sims, total, weighted, len(log))


def fit_log(
    log: LabelledLog, config: FitConfig | None = None, hasher: FeatureHasher | None = None
) -> LogisticModel:
    """``fit`` on the columns of the log: the same model as ``fit`` on its examples."""
    config = config or FitConfig()
    if hasher is None or hasher.dim != config.dim:
        hasher = FeatureHasher(config.dim)
    return _fit_design(_log_design(log, config, hasher), config, hasher)


def predict_log(prior: Prior, log: LabelledLog) -> FloatArray:
    """``prior.predict`` of every row, computed once per distinct scenario where the prior
    allows it (the same floats as row by row)."""
    if isinstance(prior, SimilarityPrior):
        return np.clip(log.similarity, 0.0, 1.0)
    if isinstance(prior, LogisticModel):
        group, heads = first_seen(log.playbook * len(log.contexts) + log.context)
        logits = np.array(
            [
                prior.logit_without_similarity(log.playbooks[p], log.contexts[c])
                for p, c in zip(
                    log.playbook[heads].tolist(), log.context[heads].tolist(), strict=True
                )
            ],
            dtype=np.float64,
        )
        z: FloatArray = logits[group] + prior.similarity_weight * (log.similarity - 0.5)
        prob: FloatArray = 1.0 / (1.0 + np.exp(-z))
        return prob
    return np.array(
        [
            prior.predict(log.playbooks[p], log.contexts[c], s)
            for p, c, s in zip(
                log.playbook.tolist(), log.context.tolist(), log.similarity.tolist(), strict=True
            )
        ],
        dtype=np.float64,
    )
