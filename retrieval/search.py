"""Hybrid search: dense (Chroma) + field-aware lexical (BM25 over the chunks, over the
documents' titles and over their headings, all with the ops synonym lexicon), deduplicated
to documents (playbooks), fused, with a calibrated similarity in [0, 1].

Fusion ``learned`` (default) adds the per-query-normalised method scores with weights fitted
by ``python -m retrieval.tune`` on the dev operator queries and ``pairs.jsonl`` (never on
the test split); ``relative`` is the older equal-weight sum of dense and body BM25 and
``rrf`` is reciprocal rank fusion, both kept for comparison.

Each document may carry an ``expansion`` chunk (``retrieval/chunking.py``: its name and
symptoms with the lexicon's other spellings), searched like any chunk on both sides but
never shown as the hit's text. The dense side embeds the query without its label lines
(``dense_query``).

``Hit.similarity`` is P(this candidate is the right document) from the calibration fitted
for the indexed documents (``retrieval/calibration.py``); without one, a fixed curve.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import numpy as np

from retrieval.bm25 import BM25Index, query_terms
from retrieval.chunking import EXPANSION
from retrieval.embeddings import Embedder
from retrieval.lexicon import Lexicon
from retrieval.store import ChunkStore, DenseHit, StoredChunk

_ALERT_FRAMING = re.compile(r"\[(?:FIRING|RESOLVED)(?::\d++)?\]\s*+", re.IGNORECASE)
_LABEL_LINE = re.compile(r"^[ \t]*+labels:[^\n]*+$", re.IGNORECASE | re.MULTILINE)


def normalise_query(text: str) -> str:
    """Drop Alertmanager framing (``[FIRING:2]``) that says nothing about the problem."""
    return _ALERT_FRAMING.sub("", text).strip()


def dense_query(text: str) -> str:
    """The text the dense side embeds: the normalised query without its ``Labels: k=v, …``
    lines. A list of label pairs is noise to a sentence embedder (it pulls every alert
    dump towards every other); BM25 still reads the labels. A query that is only labels
    is kept whole."""
    query = normalise_query(text)
    return " ".join(_LABEL_LINE.sub(" ", query).split()) or query


class Fusion(StrEnum):
    LEARNED = "learned"
    RELATIVE = "relative"
    RRF = "rrf"


class Method(StrEnum):
    HYBRID = "hybrid"
    DENSE = "dense"
    BM25 = "bm25"


@dataclass(frozen=True, slots=True)
class FusionWeights:
    """Weights of the normalised method scores in the hybrid score (``learned`` fusion).

    Fitted by ``python -m retrieval.tune`` (logistic regression of "candidate is relevant"
    on the candidates of the dev operator queries and ``pairs.jsonl``); see the README for
    the run that produced these values.
    """

    dense: float = 1.0
    body: float = 1.7
    title: float = 0.7
    headings: float = 0.1


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the hit list says about one candidate: the calibration's input."""

    rank: int
    score: float
    top_score: float
    next_score: float  # the score of the candidate ranked just below (0 when none)
    cosine: float
    top_cosine: float
    dense_rank: int | None
    lexical_rank: int | None
    lexical: float  # body BM25 normalised over the query's candidates
    title: float  # title BM25 normalised over the documents


class Calibrator(Protocol):
    def probabilities(self, evidence: Sequence[Evidence]) -> list[float]: ...


@dataclass(frozen=True, slots=True)
class FixedCurve:
    """P(relevant | best-chunk cosine, hybrid rank) as a fixed logistic curve: the fallback
    when no calibration was fitted for the indexed documents (too few of them, or a caller
    that builds a searcher by hand). The constants were fitted on the top-5 hits of the
    public runbook pairs with an older searcher; they are not a calibration of this one."""

    cosine_weight: float = 4.92
    rank_weight: float = 4.40
    intercept: float = -7.04

    def probabilities(self, evidence: Sequence[Evidence]) -> list[float]:
        out = []
        for e in evidence:
            z = self.cosine_weight * e.cosine + self.rank_weight / max(e.rank, 1) + self.intercept
            out.append(1.0 / (1.0 + math.exp(-z)))
        return out


@dataclass(frozen=True, slots=True)
class Hit:
    doc_id: str
    title: str
    similarity: float  # calibrated P(right), in [0, 1]
    cosine: float
    score: float  # the ranking score of the method used
    dense_rank: int | None
    lexical_rank: int | None
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    evidence: Evidence | None = None


# A chunk near the query: its document, its cosine, and itself when it may be shown as
# the hit's text (None for a document's expansion chunk).
_Near = tuple[str, float, StoredChunk | None]


@dataclass(slots=True)
class _Doc:
    best_cosine: float = -1.0
    best_lexical: float = 0.0
    dense_norm: float = 0.0
    lexical_norm: float = 0.0
    title_norm: float = 0.0
    headings_norm: float = 0.0
    dense_rank: int | None = None
    lexical_rank: int | None = None
    chunk: StoredChunk | None = None


@dataclass(frozen=True, slots=True)
class _Index:
    """What a search reads besides the store, built by ``refresh`` from the stored chunks.

    Row ``i`` of every per-chunk field is chunk ``i``; ``allowed`` caches the status masks
    per set of statuses (filled as searches ask for them).
    """

    chunks: list[StoredChunk]
    vectors: np.ndarray | None  # unit rows: a dot product is the cosine Chroma gives
    by_id: dict[str, StoredChunk]
    doc_of: list[str]  # per chunk: its document
    shown: list[bool]  # per chunk: may be shown as a hit's text (not an expansion chunk)
    status: np.ndarray
    bm25: BM25Index
    rows_of: dict[str, list[int]]  # per document: its chunks' rows in chunk order
    doc_ids: list[str]  # one row per document for the field indexes
    doc_index: dict[str, int]
    doc_first: list[StoredChunk]
    doc_status: np.ndarray
    titles: BM25Index
    headings: BM25Index
    allowed: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]]


def _build_index(chunks: list[StoredChunk], vectors: np.ndarray | None, lexicon: Lexicon) -> _Index:
    if vectors is not None:
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    doc_of = [str(c.metadata.get("doc_id")) for c in chunks]
    rows_of: dict[str, list[int]] = {}
    for i, doc_id in enumerate(doc_of):
        rows_of.setdefault(doc_id, []).append(i)
    for rows in rows_of.values():  # chunk order, the expansion chunk last
        rows.sort(key=lambda i: int(chunks[i].metadata.get("chunk", 0)))
    doc_ids = sorted(rows_of)
    first = [chunks[rows_of[d][0]] for d in doc_ids]
    headings = [
        " \n".join(dict.fromkeys(str(chunks[i].metadata.get("section", "")) for i in rows_of[d]))
        for d in doc_ids
    ]
    return _Index(
        chunks=chunks,
        vectors=vectors,
        by_id={c.chunk_id: c for c in chunks},
        doc_of=doc_of,
        shown=[c.metadata.get("kind") != EXPANSION for c in chunks],
        status=np.array([str(c.metadata.get("status", "")) for c in chunks]),
        bm25=BM25Index([c.text for c in chunks], lexicon=lexicon),
        rows_of=rows_of,
        doc_ids=doc_ids,
        doc_index={d: i for i, d in enumerate(doc_ids)},
        doc_first=first,
        doc_status=np.array([str(c.metadata.get("status", "")) for c in first]),
        titles=BM25Index([str(c.metadata.get("title", "")) for c in first], lexicon=lexicon),
        headings=BM25Index(headings, lexicon=lexicon),
        allowed={},
    )


class HybridSearcher:
    """Holds the lexical indexes of the store's chunks; ``refresh`` after every ingest."""

    def __init__(
        self,
        store: ChunkStore,
        embedder: Embedder,
        calibration: Calibrator | None = None,
        depth: int = 40,
        rrf_k: float = 10.0,
        dense_weight: float = 1.0,
        fusion: Fusion = Fusion.LEARNED,
        lexicon: Lexicon | None = None,
        weights: FusionWeights | None = None,
        title_depth: int = 10,
        exact_limit: int = 50_000,
    ) -> None:
        self.store, self.embedder = store, embedder
        self.calibration: Calibrator = calibration or FixedCurve()
        self.depth, self.rrf_k, self.dense_weight = depth, rrf_k, dense_weight
        self.fusion = fusion
        self.lexicon = lexicon if lexicon is not None else Lexicon.load()
        self.weights = weights or FusionWeights()
        self.title_depth = title_depth
        self.exact_limit = exact_limit
        self.refresh()

    def refresh(self) -> None:
        """Rebuild the in-memory indexes from the store. Searches running meanwhile keep
        the index they started with: the new one is published in one assignment."""
        self._index = _build_index(*self.store.all_with_vectors(), self.lexicon)

    @property
    def documents(self) -> dict[str, list[StoredChunk]]:
        """The indexed chunks of each document, in chunk order (``rows_of`` keeps it)."""
        ix = self._index
        return {d: [ix.chunks[i] for i in ix.rows_of[d]] for d in ix.doc_ids}

    def search(
        self,
        query: str,
        k: int = 5,
        method: Method = Method.HYBRID,
        statuses: Sequence[str] = ("vetted",),
        vector: np.ndarray | None = None,
        exclude: Iterable[str] = (),
    ) -> list[Hit]:
        """Top ``k`` documents whose status is in ``statuses`` (only vetted by default);
        ``exclude`` removes documents from the candidates (leave-one-out calibration)."""
        ix = self._index  # one snapshot for the whole search, whatever refresh does
        query = normalise_query(query)
        if not query or not ix.chunks:
            return []
        excluded = set(exclude)
        docs: dict[str, _Doc] = {}
        if method is not Method.BM25:
            if vector is None:  # embedded once: the lexical-only hits below reuse it
                vector = self.embedder.embed([dense_query(query)])[0]
            rank = 0
            for doc_id, cosine, shown in self._dense(ix, vector, statuses):
                if doc_id in excluded:
                    continue
                doc = docs.get(doc_id)
                if doc is None:
                    doc = docs[doc_id] = _Doc()
                if doc.dense_rank is None:
                    rank += 1
                    doc.dense_rank = rank
                if doc.chunk is None:
                    doc.chunk = shown
                if cosine > doc.best_cosine:
                    doc.best_cosine = cosine
        # One tokenization for the three lexical indexes (body, titles, headings).
        terms = query_terms(query, self.lexicon) if method is not Method.DENSE else []
        if method is not Method.DENSE:
            self._lexical(ix, terms, statuses, excluded, docs)
        if method is Method.HYBRID and self.fusion is Fusion.LEARNED:
            self._fields(ix, terms, statuses, excluded, docs)
        self._normalise(docs)
        scored = sorted((-self._score(d, method), doc_id, d) for doc_id, d in docs.items())
        scored = scored[: k + 1]  # one more: the margin of the last one
        ranked = [(doc_id, d) for _, doc_id, d in scored]
        scores = [-negated for negated, _, _ in scored]
        for doc_id, doc in ranked[:k]:
            if doc.best_cosine <= -1.0:  # found lexically only: measure it directly
                if vector is None:  # BM25 alone: the query is embedded once, if a hit needs it
                    vector = self.embedder.embed([dense_query(query)])[0]
                doc.best_cosine = self._cosine(ix, doc_id, vector)
        evidence = [
            Evidence(
                rank=position,
                score=scores[position - 1],
                top_score=scores[0],
                next_score=scores[position] if position < len(scores) else 0.0,
                cosine=doc.best_cosine,
                top_cosine=ranked[0][1].best_cosine,
                dense_rank=doc.dense_rank,
                lexical_rank=doc.lexical_rank,
                lexical=doc.lexical_norm,
                title=doc.title_norm,
            )
            for position, (_, doc) in enumerate(ranked[:k], 1)
        ]
        probabilities = self.calibration.probabilities(evidence) if evidence else []
        hits = []
        for (doc_id, doc), ev, p in zip(ranked[:k], evidence, probabilities, strict=True):
            best = doc.chunk or ix.doc_first[ix.doc_index[doc_id]]
            meta = best.metadata
            hits.append(
                Hit(
                    doc_id=doc_id,
                    title=str(meta.get("title", doc_id)),
                    similarity=p,
                    cosine=doc.best_cosine,
                    score=ev.score,
                    dense_rank=doc.dense_rank,
                    lexical_rank=doc.lexical_rank,
                    text=best.text,
                    metadata=dict(meta),
                    evidence=ev,
                )
            )
        return hits

    def _lexical(
        self,
        ix: _Index,
        terms: Sequence[str],
        statuses: Sequence[str],
        excluded: set[str],
        docs: dict[str, _Doc],
    ) -> None:
        scores = ix.bm25.scores_of(terms)
        scores[~self._masks(ix, statuses)[0]] = -1.0
        rank = 0
        top = _top_positive(scores, self.depth * 2)
        for i, score in zip(top.tolist(), scores[top].tolist(), strict=True):
            doc_id = ix.doc_of[i]
            if doc_id in excluded:
                continue
            doc = docs.get(doc_id)
            if doc is None:
                doc = docs[doc_id] = _Doc()
            if score > doc.best_lexical:
                doc.best_lexical = score
            if doc.lexical_rank is None:
                rank += 1
                doc.lexical_rank = rank
            if doc.chunk is None and ix.shown[i]:
                doc.chunk = ix.chunks[i]

    def _fields(
        self,
        ix: _Index,
        terms: Sequence[str],
        statuses: Sequence[str],
        excluded: set[str],
        docs: dict[str, _Doc],
    ) -> None:
        """Title and heading matches: every candidate gets both, and the best titles join."""
        allowed = self._masks(ix, statuses)[1]
        titles = np.where(allowed, ix.titles.scores_of(terms), 0.0)
        headings = np.where(allowed, ix.headings.scores_of(terms), 0.0)
        for i in _top_positive(titles, self.title_depth):
            if ix.doc_ids[int(i)] not in excluded:
                docs.setdefault(ix.doc_ids[int(i)], _Doc())
        top_t, top_h = float(titles.max(initial=0.0)), float(headings.max(initial=0.0))
        for doc_id, doc in docs.items():
            i = ix.doc_index.get(doc_id)
            if i is None:
                continue
            doc.title_norm = float(titles[i]) / top_t if top_t > 0 else 0.0
            doc.headings_norm = float(headings[i]) / top_h if top_h > 0 else 0.0

    def _masks(self, ix: _Index, statuses: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Which chunks and which documents have an allowed status (kept per status set)."""
        key = tuple(sorted(set(statuses)))
        masks = ix.allowed.get(key)
        if masks is None:
            masks = (np.isin(ix.status, key), np.isin(ix.doc_status, key))
            ix.allowed[key] = masks
        return masks

    def _dense(self, ix: _Index, vec: np.ndarray, statuses: Sequence[str]) -> list[_Near]:
        """The nearest chunks whose status is allowed, nearest first.

        Up to ``exact_limit`` chunks, the vectors held in memory are scored exactly (one
        matrix-vector product, cheaper than Chroma's query at that size and never
        approximate); above it, Chroma's HNSW index answers. Chroma's metadata filter
        costs ten times the search itself, so its statuses are checked against the chunks
        held in memory; only when the plain search returned a chunk that is not allowed
        (or unknown here) does the filtered query run, which keeps the answer exactly
        that of the filtered query.
        """
        if ix.vectors is not None and len(ix.chunks) <= self.exact_limit:
            return self._dense_exact(ix, vec, statuses)
        allowed = set(statuses)
        hits = self.store.query(vec, self.depth, metadata=False)
        kept = []
        for hit in hits:
            chunk = ix.by_id.get(hit.chunk_id)
            if chunk is None or str(chunk.metadata.get("status", "")) not in allowed:
                return [
                    self._near(ix, h)
                    for h in self.store.query(vec, self.depth, {"status": {"$in": list(statuses)}})
                ]
            kept.append(self._near(ix, DenseHit(hit.chunk_id, hit.similarity, chunk.metadata)))
        return kept

    def _near(self, ix: _Index, hit: DenseHit) -> _Near:
        shown = None if hit.metadata.get("kind") == EXPANSION else ix.by_id.get(hit.chunk_id)
        return str(hit.metadata["doc_id"]), hit.similarity, shown

    def _dense_exact(self, ix: _Index, vec: np.ndarray, statuses: Sequence[str]) -> list[_Near]:
        assert ix.vectors is not None
        allowed = self._masks(ix, statuses)[0]
        n = min(self.depth, int(allowed.sum()))
        if n < 1:
            return []
        unit = np.asarray(vec, dtype=np.float32)
        unit = unit / max(float(np.linalg.norm(unit)), 1e-12)
        sims = ix.vectors @ unit
        sims[~allowed] = -np.inf
        top = np.argpartition(-sims, n - 1)[:n]
        top = top[np.argsort(-sims[top], kind="stable")]
        return [
            (ix.doc_of[i], cosine, ix.chunks[i] if ix.shown[i] else None)
            for i, cosine in zip(top.tolist(), sims[top].tolist(), strict=True)
        ]

    def _normalise(self, docs: dict[str, _Doc]) -> None:
        """Scale each method's scores to [0, 1] over this query's candidates."""
        cosines = [d.best_cosine for d in docs.values() if d.dense_rank is not None]
        lexicals = [d.best_lexical for d in docs.values() if d.lexical_rank is not None]
        lo, hi = (min(cosines), max(cosines)) if cosines else (0.0, 1.0)
        top = max(lexicals) if lexicals else 1.0
        for d in docs.values():
            d.dense_norm = (
                0.0 if d.dense_rank is None else (d.best_cosine - lo) / max(hi - lo, 1e-9)
            )
            d.lexical_norm = d.best_lexical / top if top > 0 else 0.0

    def _score(self, doc: _Doc, method: Method) -> float:
        if self.fusion is Fusion.RRF:
            dense = 0.0 if doc.dense_rank is None else 1.0 / (self.rrf_k + doc.dense_rank)
            lexical = 0.0 if doc.lexical_rank is None else 1.0 / (self.rrf_k + doc.lexical_rank)
        else:
            dense, lexical = doc.dense_norm, doc.lexical_norm
        if method is Method.DENSE:
            return dense
        if method is Method.BM25:
            return lexical
        if self.fusion is Fusion.LEARNED:
            w = self.weights
            return (
                w.dense * dense
                + w.body * lexical
                + w.title * doc.title_norm
                + w.headings * doc.headings_norm
            )
        return self.dense_weight * dense + lexical

    def _cosine(self, ix: _Index, doc_id: str, vector: np.ndarray) -> float:
        """Best cosine of the query vector with the document's stored chunk vectors."""
        rows = ix.rows_of.get(doc_id, [])
        if not rows or ix.vectors is None:
            return 0.0
        return float(np.max(ix.vectors[rows] @ vector))


def _top_positive(scores: np.ndarray, n: int) -> np.ndarray:
    """The indexes of the ``n`` highest positive scores, highest first, ties in index
    order: what a stable sort of all the scores gives, sorting only the few that matched
    a query term (most score 0)."""
    matched = np.flatnonzero(scores > 0)
    return matched[np.argsort(-scores[matched], kind="stable")[:n]]
