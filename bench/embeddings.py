"""The embedding backends against PyTorch in the same run: query embedding, indexing, and
retrieval quality (MRR on the runbook corpus's ``pairs.jsonl``).

Cost: each repetition embeds every sample query one at a time and a fixed sample of corpus
chunks in batches, with every backend, the order of the backends rotating between
repetitions; a backend's ratio to PyTorch is taken per repetition and reported as a median
with a 95 % interval. Quality: ``retrieval.evaluate`` (hybrid MRR, no calibration fit) once
per backend on the whole corpus (``--quick``: 30 of one source's runbooks and the pairs that
target only them).

Short runs: the ONNX embedders run one query on a one-thread session (waking a pool's
second thread costs more than it saves on a few dozen tokens); the int8 export is also timed
with every query on its two-thread session (``embed_query_p50_ms_onnx_int8_pool``), in the
same rotation, and ``embed_query_one_thread_ratio`` is the first over the second.

A backend is adopted when its MRR moves by at most 0.01 and both its query p50 and its
indexing time are at most 0.6x PyTorch's (``embed_adopted`` names the cheapest such).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.stats import median_ci
from bot.settings import PROJECT_ROOT
from retrieval.chunking import chunk_document
from retrieval.corpus import runbook_documents
from retrieval.embeddings import (
    Embedder,
    EmbeddingBackend,
    OnnxEmbedder,
    bundled_model_path,
    make_embedder,
)
from retrieval.evaluate import Pair, evaluate, read_pairs
from retrieval.search import normalise_query

CORPUS = PROJECT_ROOT.parent / "shared" / "corpora" / "runbooks-v1"
MAX_DELTA_MRR = 0.01
MAX_COST_RATIO = 0.6
_SHORT = {
    EmbeddingBackend.TORCH: "",
    EmbeddingBackend.ONNX: "_onnx",
    EmbeddingBackend.ONNX_INT8: "_onnx_int8",
}


QUICK_RUNBOOKS = 30


def _quick_subset(pairs: list[Pair], root: Path, folder: Path) -> tuple[Path, list[Pair]]:
    """``QUICK_RUNBOOKS`` runbooks of one source (those its first pairs target, then the
    rest in name order) linked into ``folder``, and the pairs that target only them: the
    retrieval task in miniature, indexed in seconds by every backend."""
    source = "prometheus-operator"
    own = [
        Pair(p.query, frozenset(r.removeprefix(f"{source}/") for r in p.relevant))
        for p in pairs
        if all(r.startswith(f"{source}/") for r in p.relevant)
    ]
    names = sorted(p.relative_to(root / source).as_posix() for p in (root / source).rglob("*.md"))
    chosen: list[str] = []
    for name in [r for p in own for r in sorted(p.relevant)] + names:
        if name not in chosen and len(chosen) < QUICK_RUNBOOKS:
            chosen.append(name)
    for name in chosen:
        link = folder / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(root / source / name)
    kept = set(chosen)
    return folder, [p for p in own if p.relevant <= kept]


def _query_ms(embedder: Embedder, text: str) -> float:
    t = time.perf_counter()
    embedder.embed([text])
    return (time.perf_counter() - t) * 1000


def run(
    repeats: int, queries: int, chunks: int, quick: bool, cache_dir: Path | None = None
) -> dict[str, Any]:
    pairs_path = CORPUS / "pairs.jsonl"
    if not pairs_path.is_file():
        return {"embed_error": f"{pairs_path}: not found (the runbook corpus is beside the repo)"}
    pairs = read_pairs(pairs_path)
    corpus = CORPUS / "runbooks"
    with tempfile.TemporaryDirectory(prefix="npo-bench-runbooks-") as subset:
        if quick:
            corpus, pairs = _quick_subset(pairs, corpus, Path(subset))
        return _measure(pairs, corpus, repeats, queries, chunks, cache_dir)


def _measure(
    pairs: list[Pair],
    corpus: Path,
    repeats: int,
    queries: int,
    chunks: int,
    cache_dir: Path | None,
) -> dict[str, Any]:
    cache = cache_dir or Path(tempfile.gettempdir()) / "npo-bench-onnx"
    backends = list(EmbeddingBackend)
    embedders: dict[EmbeddingBackend, Embedder] = {}
    load_s: dict[EmbeddingBackend, float] = {}
    for backend in backends:  # the first ONNX load exports the model (seconds, once)
        t = time.perf_counter()
        embedders[backend] = make_embedder(backend, cache_dir=cache)
        load_s[backend] = time.perf_counter() - t
    pool = OnnxEmbedder(bundled_model_path(), cache, quantized=True, threads=os.cpu_count() or 2)
    texts = [normalise_query(p.query) for p in pairs[:queries]]
    docs = runbook_documents(corpus)
    sample = [c.text for d in docs for c in chunk_document(d)][:chunks]

    query_ms: dict[EmbeddingBackend, list[float]] = {b: [] for b in backends}
    index_s: dict[EmbeddingBackend, list[float]] = {b: [] for b in backends}
    pool_ms: list[float] = []
    for rep in range(repeats):
        order = backends[rep % len(backends) :] + backends[: rep % len(backends)]
        per_query: dict[EmbeddingBackend, list[float]] = {b: [] for b in backends}
        per_pool: list[float] = []
        for text in texts:
            if rep % 2:  # the pool's query first on every other repetition
                per_pool.append(_query_ms(pool, text))
            for backend in order:
                per_query[backend].append(_query_ms(embedders[backend], text))
            if not rep % 2:
                per_pool.append(_query_ms(pool, text))
        pool_ms.append(statistics.median(per_pool))
        for backend in order:
            t = time.perf_counter()
            embedders[backend].embed(sample)
            index_s[backend].append(time.perf_counter() - t)
            query_ms[backend].append(statistics.median(per_query[backend]))

    out: dict[str, Any] = {"embed_repeats": repeats, "embed_index_chunks": len(sample)}
    mrr: dict[EmbeddingBackend, float] = {}
    for backend in backends:
        # Ranks do not depend on the calibration (it maps a hit list to probabilities):
        # skipping its fit saves 1,500 self-queries per backend.
        result = evaluate(corpus, pairs, embedders[backend], calibrate=False)
        methods = result["methods"]
        assert isinstance(methods, dict)
        mrr[backend] = float(methods["hybrid"]["mrr"])
        suffix = _SHORT[backend]
        out[f"retrieval_mrr{suffix}"] = mrr[backend]
        out[f"embed_load_s{suffix}"] = load_s[backend]
        out.update(median_ci(f"embed_query_p50_ms{suffix}", query_ms[backend]))
        out.update(median_ci(f"embed_index_s{suffix}", index_s[backend]))
    out["retrieval_pairs"] = len(pairs)
    out.update(median_ci("embed_query_p50_ms_onnx_int8_pool", pool_ms))
    int8 = query_ms[EmbeddingBackend.ONNX_INT8]
    one_thread = [a / b for a, b in zip(int8, pool_ms, strict=True)]
    out.update(median_ci("embed_query_one_thread_ratio", one_thread))
    torch = EmbeddingBackend.TORCH
    adopted = torch
    for backend in backends[1:]:
        suffix = _SHORT[backend]
        q_ratio = [a / b for a, b in zip(query_ms[backend], query_ms[torch], strict=True)]
        i_ratio = [a / b for a, b in zip(index_s[backend], index_s[torch], strict=True)]
        delta = mrr[backend] - mrr[torch]
        out.update(median_ci(f"embed_query_ratio{suffix}", q_ratio))
        out.update(median_ci(f"index_ratio{suffix}", i_ratio))
        out[f"retrieval_delta_mrr{suffix}"] = delta
        fits = (
            abs(delta) <= MAX_DELTA_MRR
            and statistics.median(q_ratio) <= MAX_COST_RATIO
            and statistics.median(i_ratio) <= MAX_COST_RATIO
        )
        cheaper = (
            adopted is torch or out[f"index_ratio{suffix}"] < out[f"index_ratio{_SHORT[adopted]}"]
        )
        if fits and cheaper:
            adopted = backend
    # The headline keys are the adopted export's (the float32 one's when none is adopted);
    # every backend's keep their suffix.
    headline = _SHORT[adopted] or _SHORT[EmbeddingBackend.ONNX]
    for key in ("embed_query_ratio", "index_ratio"):
        out[key] = out[f"{key}{headline}"]
        out[f"{key}_ci"] = out[f"{key}{headline}_ci"]
    out["retrieval_delta_mrr"] = out[f"retrieval_delta_mrr{headline}"]
    out["embed_adopted"] = str(adopted)
    return out
