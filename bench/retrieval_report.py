"""``python -m bench.retrieval_report --corpus DIR``: every retrieval set from one index of
runbooks-v1 — the operator queries (dev, and test with ``--test``), ``pairs.jsonl`` and
``pairs-gitlab.jsonl`` — with dense-only, BM25 and hybrid side by side, the no-answer share
confidently wrong, the calibration's held-out reliability and the query p50 of hybrid and
dense-only. The same code as ``npo eval retrieval``; one indexing and one calibration fit
for all sets. Report ``--test`` once per frozen configuration, never tune on it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bot.native import load_torch_first, one_blas_thread
from bot.settings import PROJECT_ROOT, Settings
from retrieval.embeddings import EmbeddingBackend, make_embedder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpus", type=Path, required=True, help="the runbooks-v1 folder")
    ap.add_argument(
        "--queries",
        type=Path,
        default=PROJECT_ROOT / "eval" / "retrieval" / "operator_queries.jsonl",
    )
    ap.add_argument("--test", action="store_true", help="also the test split")
    ap.add_argument("--cache", type=Path, help="reuse corpus and self-query vectors")
    ap.add_argument(
        "--model",
        help="sentence-transformers model name or folder, e.g. one made by retrieval.adapt "
        "(default: the bundled MiniLM)",
    )
    ap.add_argument(
        "--backend",
        choices=[b.value for b in EmbeddingBackend],
        default=Settings().embedding_backend.value,
        help="how the model runs (default: the deployment's, NPO_EMBEDDING_BACKEND)",
    )
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--no-calibration",
        action="store_true",
        help="skip the calibration fit (recall/MRR only; the no-answer share is then meaningless)",
    )
    args = ap.parse_args(argv)
    load_torch_first()
    one_blas_thread()
    from retrieval.calibration import FittedCalibration, fit_calibration
    from retrieval.evaluate import (
        CachedEmbedder,
        read_pairs,
        runbook_family,
        runbook_index,
        score_pairs,
    )

    embedder = make_embedder(args.backend, args.model)
    cached = CachedEmbedder(embedder, args.cache) if args.cache else None
    sets = {"operator dev": read_pairs(args.queries, "dev")}
    if args.test:
        sets["operator test"] = read_pairs(args.queries, "test")
    sets["pairs.jsonl"] = read_pairs(args.corpus / "pairs.jsonl")
    sets["pairs-gitlab.jsonl"] = read_pairs(args.corpus / "pairs-gitlab.jsonl")
    out: dict[str, Any] = {}
    with runbook_index(args.corpus / "runbooks", embedder, cached) as index:
        index.searcher.embedder = cached or embedder
        fitted = (
            None
            if args.no_calibration
            else fit_calibration(index.searcher, equivalent=runbook_family)
        )
        index.searcher.embedder = embedder
        if fitted is not None:
            index.searcher.calibration = fitted
        if cached is not None:
            cached.save()
        if isinstance(fitted, FittedCalibration):
            out["calibration"] = {
                k: fitted.report[k] for k in ("documents", "self_queries", "held_out_top1")
            }
        for name, pairs in sets.items():
            result = score_pairs(index.searcher, pairs, embedder, threshold=args.threshold)
            result.pop("misses")
            out[name] = result
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{'set':20s} {'method':7s} {'R@1':>6s} {'R@3':>6s} {'R@5':>6s} {'MRR':>6s}")
    for name, result in out.items():
        if name == "calibration":
            continue
        for method, m in result["methods"].items():
            print(
                f"{name:20s} {method:7s} {m['recall@1']:6.3f} {m['recall@3']:6.3f} "
                f"{m['recall@5']:6.3f} {m['mrr']:6.3f}"
            )
        na, t = result["no_answer"], result["timing"]
        if na["queries"]:
            print(
                f"{'':20s} no-answer {na['queries']}: confidently wrong "
                f"{na['confidently_wrong']:.3f} (p >= {na['threshold']})"
            )
        print(
            f"{'':20s} p50 hybrid {t['query_ms_p50']:.1f} ms,"
            f" dense {t['dense_query_ms_p50']:.1f} ms"
        )
    cal = out.get("calibration")
    if cal:
        top1 = cal["held_out_top1"]
        print(
            f"calibration: {cal['documents']} runbooks, {cal['self_queries']} self-queries, "
            f"held-out top-1 Brier {top1['brier']}, ECE {top1['ece']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
