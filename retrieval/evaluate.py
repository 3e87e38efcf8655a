"""Retrieval quality of hybrid, dense-only and BM25 in one run on the same chunks.

Answerable queries give recall@k and MRR per method; no-answer queries (``relevant: []``)
give the share whose top hybrid candidate is confidently wrong (calibrated P ≥ the decision
threshold), reported apart. The calibration used is fitted on the indexed corpus itself
(self-queries, ``retrieval/calibration.py``), never on the queries being scored.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrieval.chunking import Chunk, chunk_document
from retrieval.corpus import runbook_documents
from retrieval.embeddings import Embedder, FloatMatrix, embedder_identity
from retrieval.lexicon import Lexicon
from retrieval.search import HybridSearcher, Method, dense_query
from retrieval.store import ChunkStore, chroma_client

KS = (1, 3, 5)


class PairsError(ValueError):
    """A line of the pairs file is unusable; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Pair:
    query: str
    relevant: frozenset[str]  # empty: no document answers it
    id: str = ""
    split: str = ""
    style: str = ""


def read_pairs(path: Path, split: str | None = None) -> list[Pair]:
    """Pairs of ``path`` (only those of ``split`` when given). ``"relevant": []`` marks a
    no-answer query; a line without ``relevant`` needs ``runbook``."""
    pairs = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PairsError(f"{path}:{n}: not JSON ({exc.msg})") from exc
            if not isinstance(obj, dict) or not isinstance(obj.get("query"), str):
                raise PairsError(f"{path}:{n}: needs a string field 'query'")
            relevant = obj.get("relevant")
            runbook = obj.get("runbook")
            if relevant is None and not isinstance(runbook, str):
                raise PairsError(f"{path}:{n}: needs 'runbook' (a path) or 'relevant'")
            relevant = relevant or []
            if not isinstance(relevant, list) or not all(isinstance(r, str) for r in relevant):
                raise PairsError(f"{path}:{n}: 'relevant' must be a list of paths")
            targets = set(relevant) | ({runbook} if isinstance(runbook, str) else set())
            row_split = str(obj.get("split", ""))
            if split is not None and row_split != split:
                continue
            pairs.append(
                Pair(
                    obj["query"],
                    frozenset(targets),
                    str(obj.get("id", f"line-{n}")),
                    row_split,
                    str(obj.get("style", "")),
                )
            )
    if not pairs:
        raise PairsError(f"{path}: no pairs" + (f" in split {split!r}" if split else ""))
    return pairs


class CachedEmbedder:
    """Wraps an embedder with an on-disk cache of vectors keyed by the text's hash, so
    re-running an evaluation does not re-embed an unchanged corpus. Evaluation only."""

    def __init__(self, inner: Embedder, folder: Path) -> None:
        self.inner, self.folder = inner, folder
        folder.mkdir(parents=True, exist_ok=True)
        # Keyed by the embedder too (backend and model files): an adapted model has the base
        # model's dimension, and a folder may be retrained in place.
        self.identity = embedder_identity(inner)
        tag = hashlib.sha256(self.identity.encode("utf-8")).hexdigest()[:8]
        self._path = folder / f"vectors-{inner.dimension}-{tag}.npz"
        self._memo: dict[str, np.ndarray] = {}
        if self._path.exists():
            with np.load(self._path) as data:
                self._memo = {k: data[k] for k in data.files}
        self._dirty = False

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def embed(self, texts: Sequence[str]) -> FloatMatrix:
        keys = [hashlib.sha256(t.encode("utf-8")).hexdigest()[:32] for t in texts]
        missing = [i for i, key in enumerate(keys) if key not in self._memo]
        if missing:
            fresh = self.inner.embed([texts[i] for i in missing])
            for i, vec in zip(missing, fresh, strict=True):
                self._memo[keys[i]] = vec
            self._dirty = True
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self._memo[key] for key in keys]).astype(np.float32)

    def save(self) -> None:
        if self._dirty:
            np.savez(self._path, **self._memo)  # type: ignore[arg-type]
            self._dirty = False


@dataclass(slots=True)
class Index:
    searcher: HybridSearcher
    documents: int
    chunks: list[Chunk]
    doc_ids: set[str]
    index_s: float


@contextmanager
def runbook_index(
    corpus: Path, embedder: Embedder, chunk_embedder: Embedder | None = None
) -> Iterator[Index]:
    """Every runbook of ``corpus`` indexed in a fresh temporary store, expansion chunks
    included as at ingest (chunk vectors from ``chunk_embedder`` when given, e.g. a
    ``CachedEmbedder`` of the same model)."""
    with tempfile.TemporaryDirectory(prefix="npo-eval-") as tmp:
        started = time.perf_counter()
        docs = runbook_documents(corpus)
        if not docs:
            raise ValueError(f"{corpus}: no Markdown files to index")
        lexicon = Lexicon.load()
        chunks = [c for d in docs for c in chunk_document(d, lexicon=lexicon)]
        vectors = (chunk_embedder or embedder).embed([c.text for c in chunks])
        store = ChunkStore(chroma_client(Path(tmp)), embedder)
        store.add(chunks, vectors)
        searcher = HybridSearcher(store, embedder, lexicon=lexicon)
        yield Index(
            searcher, len(docs), chunks, {d.doc_id for d in docs}, time.perf_counter() - started
        )


def _metrics(ranks: Sequence[int | None]) -> dict[str, float]:
    n = max(len(ranks), 1)
    out = {f"recall@{k}": sum(1 for r in ranks if r is not None and r <= k) / n for k in KS}
    out["mrr"] = sum(1.0 / r for r in ranks if r is not None) / n
    return {k: round(v, 4) for k, v in out.items()}


def score_pairs(
    searcher: HybridSearcher,
    pairs: Sequence[Pair],
    embedder: Embedder,
    k: int = 5,
    threshold: float = 0.7,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, object]:
    """Recall@k/MRR per method on the answerable pairs; the no-answer pairs apart."""
    depth = max(k, max(KS), 10)
    ranks: dict[Method, list[int | None]] = {m: [] for m in Method}
    latency: dict[Method, list[float]] = {Method.HYBRID: [], Method.DENSE: []}
    misses: list[dict[str, object]] = []
    confident_wrong: list[dict[str, object]] = []
    answered = [p for p in pairs if p.relevant]
    no_answer = [p for p in pairs if not p.relevant]
    right_top_p: list[tuple[float, bool]] = []
    for i, pair in enumerate(pairs):
        results = {}
        for method in (Method.DENSE, Method.HYBRID):  # each timed with its own embedding
            t = time.perf_counter()
            vector = embedder.embed([dense_query(pair.query)])[0]
            results[method] = searcher.search(pair.query, depth, method, vector=vector)
            latency[method].append((time.perf_counter() - t) * 1000)
        results[Method.BM25] = searcher.search(pair.query, depth, Method.BM25)
        top = results[Method.HYBRID][:1]
        if pair.relevant:
            for method, hits in results.items():
                rank = next((j for j, h in enumerate(hits, 1) if h.doc_id in pair.relevant), None)
                ranks[method].append(rank)
                if method is Method.HYBRID and (rank is None or rank > 1):
                    misses.append(
                        {
                            "id": pair.id,
                            "query": pair.query,
                            "rank": rank,
                            "got": [h.doc_id for h in hits[:3]],
                            "want": sorted(pair.relevant),
                        }
                    )
            if top:
                right_top_p.append((top[0].similarity, top[0].doc_id in pair.relevant))
        elif top and top[0].similarity >= threshold:
            confident_wrong.append(
                {"id": pair.id, "query": pair.query, "top": top[0].doc_id, "p": top[0].similarity}
            )
        if progress:
            progress("query", i + 1, len(pairs))
    confident_right = sum(1 for p, ok in right_top_p if ok and p >= threshold)
    confident_bad = sum(1 for p, ok in right_top_p if not ok and p >= threshold)
    return {
        "queries": len(answered),
        "methods": {m.value: _metrics(ranks[m]) for m in Method},
        "no_answer": {
            "queries": len(no_answer),
            "threshold": threshold,
            "confidently_wrong": round(len(confident_wrong) / max(len(no_answer), 1), 4),
            "examples": confident_wrong,
        },
        "answerable_at_threshold": {
            "right_confident": round(confident_right / max(len(answered), 1), 4),
            "wrong_confident": round(confident_bad / max(len(answered), 1), 4),
        },
        "timing": {
            "query_ms_p50": round(statistics.median(latency[Method.HYBRID]), 3),
            "dense_query_ms_p50": round(statistics.median(latency[Method.DENSE]), 3),
        },
        "misses": misses,
    }


def evaluate(
    corpus: Path,
    pairs: Sequence[Pair],
    embedder: Embedder,
    k: int = 5,
    progress: Callable[[str, int, int], None] | None = None,
    threshold: float = 0.7,
    calibrate: bool = True,
    cache: Path | None = None,
) -> dict[str, object]:
    """Index ``corpus`` in a fresh temporary store, fit its calibration from self-queries
    (``calibrate``) and score every pair with each method. With ``cache``, corpus and
    self-query vectors are reused from that folder; the scored queries are always embedded
    afresh, so the timings are real."""
    from retrieval.calibration import FittedCalibration, fit_calibration

    cached = CachedEmbedder(embedder, cache) if cache is not None else None
    with runbook_index(corpus, embedder, cached) as index:
        calibration_report: dict[str, object] = {}
        if calibrate:
            index.searcher.embedder = cached or embedder
            fitted = fit_calibration(index.searcher, equivalent=runbook_family)
            index.searcher.embedder = embedder
            index.searcher.calibration = fitted
            if isinstance(fitted, FittedCalibration):
                calibration_report = fitted.report
        if cached is not None:
            cached.save()
        result = score_pairs(index.searcher, pairs, embedder, k, threshold, progress)
        missing = sorted({p for pair in pairs for p in pair.relevant} - index.doc_ids)
        result["timing"]["index_s"] = round(index.index_s, 3)  # type: ignore[index]
        result.update(
            documents=index.documents,
            chunks=len(index.chunks),
            unknown_targets=missing,
            calibration=calibration_report,
        )
    return result


def runbook_family(doc_id: str) -> str:
    """Copies of a runbook in several sources share the file name (``KubeAPIDown.md``
    under prometheus-operator and openshift): they count as the same answer when the
    calibration leaves a document out. README/index files keep their folder."""
    parts = doc_id.rsplit("/", 2)
    name = parts[-1].lower()
    if name in {"readme.md", "index.md", "_index.md"} and len(parts) > 1:
        return doc_id.lower()
    return name
