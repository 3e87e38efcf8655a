"""The calibration of ``Hit.similarity``: P(this candidate is the right document) for the
documents that are indexed, fitted from self-queries when they change.

Why: the decision core treats the similarity as the cold-start probability that a
recommendation is right (with a threshold near 0.7 and an override costing 3, an
overconfident value means a wrong recommendation). A fixed curve fitted on another corpus
cannot be that probability, so every deployment fits its own:

* Self-queries: from each indexed document, several queries the way operators describe a
  fault — its title, its alert/fault names spelled as words, its symptom lines, a terse
  page of a few of its words — each also rewritten through the ops lexicon ("flapping" →
  "going up and down").
* Each self-query runs through the searcher; every one of its top-k candidates is one
  example (features of the hit list → was it the query's document).
* Leave-one-out negatives: the same query with its document (and its copies, ``equivalent``)
  removed from the candidates, so the top candidate is then wrong: "nothing fits" is learned.
* A small L2-regularised logistic regression on those examples. Its reliability (Brier,
  ECE, a reliability table) is measured out of fold, with folds split by document.

The fit is stored beside the index (``calibration.json``) with a fingerprint of the indexed
documents, the lexicon and the fusion weights, and refitted only when that changes.
With fewer than ``MIN_DOCUMENTS`` documents there is too little to fit: the searcher's
fixed fallback curve (``FixedCurve``) is kept and the report says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from retrieval.chunking import EXPANSION, humanise
from retrieval.embeddings import embedder_identity
from retrieval.search import Evidence, FixedCurve, HybridSearcher, dense_query
from retrieval.store import StoredChunk

log = logging.getLogger(__name__)

VERSION = 1
MIN_DOCUMENTS = 8
# Weight of a leave-one-out (no-answer) self-query against an answerable one: the odds that
# an incident has no playbook, about 1 in 5 (chosen on the dev incidents: 0.25 gave
# right-and-confident 52 % with no confident wrong at 0.7; 0.5 gave 42 %, 1.0 35 %).
NO_ANSWER_WEIGHT = 0.25
FEATURES = (
    "score",
    "gap_to_top",
    "margin_below",
    "top_margin",
    "inverse_rank",
    "is_top",
    "cosine",
    "cosine_gap",
    "both_methods_agree",
    "inverse_dense_rank",
    "inverse_lexical_rank",
    "lexical",
    "title",
)
_SYMPTOM_HEADINGS = frozenset(
    {"symptoms", "meaning", "impact", "summary", "description", "overview", "problem"}
)
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_MARKUP = re.compile(r"[`*_>#\[\]]|\(https?://[^)\s]{0,300}\)")

FloatArray = npt.NDArray[np.float64]


def features(evidence: Sequence[Evidence]) -> FloatArray:
    """One row per candidate of a hit list, in ``FEATURES`` order."""
    rows = []
    top_margin = (
        evidence[0].score - evidence[0].next_score if evidence else 0.0
    )  # the runner-up's distance to the leader, shared by the whole list
    for e in evidence:
        rows.append(
            [
                e.score,
                e.top_score - e.score,
                e.score - e.next_score,
                top_margin,
                1.0 / max(e.rank, 1),
                1.0 if e.rank == 1 else 0.0,
                e.cosine,
                e.top_cosine - e.cosine,
                1.0 if e.dense_rank == 1 and e.lexical_rank == 1 else 0.0,
                0.0 if e.dense_rank is None else 1.0 / e.dense_rank,
                0.0 if e.lexical_rank is None else 1.0 / e.lexical_rank,
                e.lexical,
                e.title,
            ]
        )
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURES))


def fit_logistic(
    x: FloatArray, y: FloatArray, weight: FloatArray, l2: float = 1.0, steps: int = 50
) -> tuple[FloatArray, float, FloatArray, FloatArray]:
    """Weighted L2 logistic regression by Newton's method on standardised features:
    (coefficients, intercept, mean, scale)."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    beta = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], l2)
    penalty[-1] = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ beta, -30, 30)))
        grad = z.T @ (weight * (p - y)) + penalty * beta
        hess = (z * (weight * p * (1 - p))[:, None]).T @ z + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if float(np.max(np.abs(step))) < 1e-8:
            break
    return beta[:-1], float(beta[-1]), mean, scale


@dataclass(frozen=True, slots=True)
class FittedCalibration:
    """A logistic model of P(candidate right | hit-list features), with its report."""

    coefficients: tuple[float, ...]
    intercept: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    fingerprint: str = ""
    report: dict[str, object] = field(default_factory=dict)

    def probabilities(self, evidence: Sequence[Evidence]) -> list[float]:
        if not evidence:
            return []
        x = (features(evidence) - np.asarray(self.mean)) / np.asarray(self.scale)
        z = x @ np.asarray(self.coefficients) + self.intercept
        return [float(v) for v in 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))]

    def to_json(self) -> str:
        data = asdict(self)
        data["version"], data["features"] = VERSION, list(FEATURES)
        return json.dumps(data, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FittedCalibration:
        data = json.loads(text)
        if data.get("version") != VERSION or data.get("features") != list(FEATURES):
            raise ValueError("calibration file of another version")
        return cls(
            tuple(float(v) for v in data["coefficients"]),
            float(data["intercept"]),
            tuple(float(v) for v in data["mean"]),
            tuple(float(v) for v in data["scale"]),
            str(data["fingerprint"]),
            dict(data.get("report", {})),
        )


# --- self-queries -------------------------------------------------------------------------


def _clean(line: str) -> str:
    return " ".join(_MARKUP.sub(" ", _BULLET.sub("", line)).split())


def _words(text: str, limit: int) -> str:
    return " ".join(text.split()[:limit])


def self_queries(chunks: Sequence[StoredChunk], rng: random.Random, per_doc: int = 6) -> list[str]:
    """Queries an operator might write about the document these chunks come from (its
    expansion chunk left out: it is derived text, not the document's own lines)."""
    chunks = [c for c in chunks if c.metadata.get("kind") != EXPANSION]
    if not chunks:
        return []
    meta = chunks[0].metadata
    title_field = str(meta.get("title", ""))
    title = str(meta.get("playbook_title") or title_field.split("\n")[0].split(" — ")[0])
    names: list[str] = []
    for line in title_field.split("\n")[1:]:  # playbooks: "action: …; applies to: a, b"
        if "applies to:" in line:
            names.append(humanise(line.split("applies to:", 1)[1]).replace(",", ""))
    if " — " in title_field:  # runbooks: the file name spelled as words
        names.append(title_field.split("\n")[0].split(" — ", 1)[1])
    body_lines = [
        line for c in chunks for line in c.text.split("\n")[1 + title_field.count("\n") :]
    ]
    symptoms: list[str] = []
    first_text: list[str] = []
    in_symptoms = False
    for line in body_lines:
        text = _clean(line)
        if not text:
            continue
        if text.lower().rstrip(":") in _SYMPTOM_HEADINGS:
            in_symptoms = True
            continue
        if len(text.split()) <= 3 and text[:1].isupper() and not text.endswith("."):
            in_symptoms = False  # another heading
            continue
        if in_symptoms and len(symptoms) < 3:
            symptoms.append(_words(text, 24))
        elif len(first_text) < 2 and len(text.split()) >= 4:
            first_text.append(_words(text, 24))
    base = [title, *names, *(symptoms or first_text)]
    pool = " ".join(symptoms or first_text).split()
    if pool:
        terse = rng.sample(pool, min(len(pool), rng.randint(4, 7)))
        base.append(" ".join(terse + title.split()[:2]))
    return list(dict.fromkeys(b.strip() for b in base if b.strip()))[:per_doc]


# --- fitting --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Examples:
    x: list[FloatArray] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    w: list[float] = field(default_factory=list)
    group: list[int] = field(default_factory=list)
    top: list[bool] = field(default_factory=list)


def _family_of(equivalent: Callable[[str], str] | None) -> Callable[[str], str]:
    return equivalent or (lambda doc_id: doc_id)


def fingerprint(searcher: HybridSearcher, no_answer_weight: float = 0.25) -> str:
    """Changes when the indexed documents, the lexicon, the fusion, the embedder or this
    code change."""
    h = hashlib.sha256(
        f"v{VERSION}|{searcher.fusion}|{searcher.weights}|{no_answer_weight}".encode()
    )
    h.update(embedder_identity(searcher.embedder).encode())
    h.update(searcher.lexicon.fingerprint.encode())
    for doc_id, chunks in sorted(searcher.documents.items()):
        hashes = sorted({str(c.metadata.get("content_hash", "")) for c in chunks})
        status = str(chunks[0].metadata.get("status", ""))
        h.update(f"{doc_id}|{status}|{','.join(hashes)}\n".encode())
    return h.hexdigest()


MAX_SELF_QUERIES = 1500


def _collect(
    searcher: HybridSearcher,
    equivalent: Callable[[str], str] | None,
    k: int,
    no_answer_weight: float,
    seed: int,
    max_queries: int = 0,
) -> tuple[_Examples, int]:
    family = _family_of(equivalent)
    documents = {
        d: c for d, c in searcher.documents.items() if str(c[0].metadata.get("status")) == "vetted"
    }
    members: dict[str, set[str]] = {}
    for doc_id in documents:
        members.setdefault(family(doc_id), set()).add(doc_id)
    rng = random.Random(seed)
    queries: list[tuple[str, str]] = []
    for doc_id, chunks in sorted(documents.items()):
        for q in self_queries(chunks, rng):
            queries.append((doc_id, q))
            queries.append((doc_id, searcher.lexicon.rewrite(q, rng)))
    queries = list(dict.fromkeys(queries))
    if max_queries and len(queries) > max_queries:  # a large corpus: a fixed sample of them
        queries = sorted(rng.sample(queries, max_queries))
    vectors = searcher.embedder.embed([dense_query(q) for _, q in queries])
    groups = {f: i for i, f in enumerate(sorted(members))}
    ex = _Examples()
    for (doc_id, query), vector in zip(queries, vectors, strict=True):
        own = members[family(doc_id)]
        for leave_out, weight in ((False, 1.0), (True, no_answer_weight)):
            hits = searcher.search(query, k, vector=vector, exclude=own if leave_out else ())
            if not hits:
                continue
            rows = features([h.evidence for h in hits if h.evidence is not None])
            for h, row in zip(hits, rows, strict=True):
                ex.x.append(row)
                ex.y.append(1.0 if h.doc_id in own else 0.0)
                ex.w.append(weight)
                ex.group.append(groups[family(doc_id)])
                ex.top.append(h.evidence is not None and h.evidence.rank == 1)
    return ex, len(queries)


def reliability(
    p: FloatArray, y: FloatArray, weight: FloatArray | None = None, bins: int = 10
) -> dict[str, object]:
    """Brier score, expected calibration error and the reliability table (weighted like
    the fit when ``weight`` is given)."""
    w = np.ones(len(p)) if weight is None else weight
    total = float(w.sum()) or 1.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    table = []
    ece = 0.0
    for i in range(bins):
        inside = (p >= edges[i]) & ((p < edges[i + 1]) if i < bins - 1 else (p <= 1.0))
        n = int(inside.sum())
        if n:
            wi = w[inside]
            mean_p = float(np.average(p[inside], weights=wi))
            freq = float(np.average(y[inside], weights=wi))
            ece += float(wi.sum()) / total * abs(mean_p - freq)
            table.append(
                {
                    "bin": f"{edges[i]:.1f}-{edges[i + 1]:.1f}",
                    "n": n,
                    "mean_p": round(mean_p, 3),
                    "right": round(freq, 3),
                }
            )
    return {
        "n": len(p),
        "brier": round(float(np.sum(w * (p - y) ** 2) / total), 4) if len(p) else None,
        "ece": round(ece, 4),
        "table": table,
    }


def fit_calibration(
    searcher: HybridSearcher,
    equivalent: Callable[[str], str] | None = None,
    k: int = 5,
    no_answer_weight: float = NO_ANSWER_WEIGHT,
    folds: int = 5,
    seed: int = 0,
    max_queries: int = MAX_SELF_QUERIES,
) -> FittedCalibration | FixedCurve:
    """Fit P(candidate right) on self-queries of the searcher's vetted documents; the
    report holds the out-of-fold reliability (folds split by document family). Beyond
    ``max_queries`` self-queries (a corpus of hundreds of documents) a fixed random sample
    of them is used: each costs two searches, and a few thousand fit 13 weights well."""
    documents = [
        d for d, c in searcher.documents.items() if str(c[0].metadata.get("status")) == "vetted"
    ]
    if len(documents) < MIN_DOCUMENTS:
        log.warning(
            "calibration: %d documents, fewer than %d: fixed curve", len(documents), MIN_DOCUMENTS
        )
        return FixedCurve()
    ex, n_queries = _collect(searcher, equivalent, k, no_answer_weight, seed, max_queries)
    x, y, w = np.vstack(ex.x), np.asarray(ex.y), np.asarray(ex.w)
    group, top = np.asarray(ex.group), np.asarray(ex.top)
    fold_of = group % folds
    out_of_fold = np.zeros(len(y))
    for f in range(folds):
        test = fold_of == f
        if not test.any() or test.all():
            continue
        coef, b, mean, scale = fit_logistic(x[~test], y[~test], w[~test])
        out_of_fold[test] = 1.0 / (1.0 + np.exp(-(((x[test] - mean) / scale) @ coef + b)))
    coef, b, mean, scale = fit_logistic(x, y, w)
    answered = w == 1.0
    report: dict[str, object] = {
        "documents": len(documents),
        "self_queries": n_queries,
        "examples": len(y),
        "no_answer_weight": no_answer_weight,
        # the top candidate of every self-query, with and without its own document
        "held_out_top1": reliability(out_of_fold[top], y[top], w[top]),
        "held_out_top1_answerable": reliability(out_of_fold[top & answered], y[top & answered]),
        "held_out_all": reliability(out_of_fold, y, w),
    }
    return FittedCalibration(
        tuple(float(v) for v in coef),
        b,
        tuple(float(v) for v in mean),
        tuple(float(v) for v in scale),
        fingerprint(searcher, no_answer_weight),
        report,
    )


def load_or_fit(
    searcher: HybridSearcher,
    path: Path,
    equivalent: Callable[[str], str] | None = None,
    no_answer_weight: float = NO_ANSWER_WEIGHT,
) -> FittedCalibration | FixedCurve:
    """The stored calibration when it was fitted for exactly what is indexed now; else a
    new fit, written to ``path`` atomically. Installs it on the searcher either way."""
    current = fingerprint(searcher, no_answer_weight)
    try:
        stored = FittedCalibration.from_json(path.read_text(encoding="utf-8"))
        if stored.fingerprint == current:
            searcher.calibration = stored
            return stored
    except (OSError, ValueError, KeyError, TypeError):
        pass
    fitted = fit_calibration(searcher, equivalent, no_answer_weight=no_answer_weight)
    searcher.calibration = fitted
    if isinstance(fitted, FittedCalibration):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".calibration-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(fitted.to_json())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        top1 = fitted.report.get("held_out_top1", {})
        log.info(
            "calibration refitted on %s self-queries (held-out top-1 Brier %s)",
            fitted.report.get("self_queries"),
            top1.get("brier") if isinstance(top1, dict) else None,
        )
    return fitted
