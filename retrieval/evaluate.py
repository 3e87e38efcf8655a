"""Retrieval quality of hybrid, dense-only and BM25 in one run on the same chunks."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from retrieval.chunking import chunk_document
from retrieval.corpus import runbook_documents
from retrieval.embeddings import Embedder
from retrieval.search import HybridSearcher, Method, normalise_query
from retrieval.store import ChunkStore, chroma_client

KS = (1, 3, 5)


class PairsError(ValueError):
    """A line of the pairs file is unusable; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Pair:
    query: str
    relevant: frozenset[str]


def read_pairs(path: Path) -> list[Pair]:
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
            relevant = obj.get("relevant") or []
            runbook = obj.get("runbook")
            if not isinstance(relevant, list) or not all(isinstance(r, str) for r in relevant):
                raise PairsError(f"{path}:{n}: 'relevant' must be a list of paths")
            if not isinstance(runbook, str) and not relevant:
                raise PairsError(f"{path}:{n}: needs 'runbook' (a path) or 'relevant'")
            targets = set(relevant) | ({runbook} if isinstance(runbook, str) else set())
            pairs.append(Pair(obj["query"], frozenset(targets)))
    if not pairs:
        raise PairsError(f"{path}: no pairs")
    return pairs


def _metrics(ranks: Sequence[int | None]) -> dict[str, float]:
    n = len(ranks)
    out = {f"recall@{k}": sum(1 for r in ranks if r is not None and r <= k) / n for k in KS}
    out["mrr"] = sum(1.0 / r for r in ranks if r is not None) / n
    return {k: round(v, 4) for k, v in out.items()}


def evaluate(
    corpus: Path,
    pairs: Sequence[Pair],
    embedder: Embedder,
    k: int = 5,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, object]:
    """Index ``corpus`` in a fresh temporary store and score every pair with each method."""
    depth = max(k, max(KS), 10)
    with tempfile.TemporaryDirectory(prefix="npo-eval-") as tmp:
        started = time.perf_counter()
        docs = runbook_documents(corpus)
        if not docs:
            raise ValueError(f"{corpus}: no Markdown files to index")
        chunks = [c for d in docs for c in chunk_document(d)]
        vectors = embedder.embed([c.text for c in chunks])
        store = ChunkStore(chroma_client(Path(tmp)), embedder)
        store.add(chunks, vectors)
        searcher = HybridSearcher(store, embedder)
        index_s = time.perf_counter() - started
        missing = sorted({p for pair in pairs for p in pair.relevant} - {d.doc_id for d in docs})
        ranks: dict[Method, list[int | None]] = {m: [] for m in Method}
        latencies = []
        for i, pair in enumerate(pairs):
            t = time.perf_counter()
            vector = embedder.embed([normalise_query(pair.query)])[0]
            hybrid = searcher.search(pair.query, depth, Method.HYBRID, vector=vector)
            latencies.append((time.perf_counter() - t) * 1000)
            results = {
                Method.HYBRID: hybrid,
                Method.DENSE: searcher.search(pair.query, depth, Method.DENSE, vector=vector),
                Method.BM25: searcher.search(pair.query, depth, Method.BM25, vector=vector),
            }
            for method, hits in results.items():
                rank = next((j for j, h in enumerate(hits, 1) if h.doc_id in pair.relevant), None)
                ranks[method].append(rank)
            if progress:
                progress("query", i + 1, len(pairs))
    return {
        "queries": len(pairs),
        "methods": {m.value: _metrics(ranks[m]) for m in Method},
        "timing": {
            "index_s": round(index_s, 3),
            "query_ms_p50": round(statistics.median(latencies), 3),
        },
        "documents": len(docs),
        "chunks": len(chunks),
        "unknown_targets": missing,
    }
