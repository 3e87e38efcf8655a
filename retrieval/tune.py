"""``python -m retrieval.tune``: fit the hybrid fusion weights on the dev operator queries
and ``pairs.jsonl`` (never the test split), and print what each technique adds on dev.

A grid over the weights of body BM25, title BM25 and heading BM25 (dense fixed at 1: only
ratios matter) maximising the mean MRR of the two sets. The winner is printed; it is
committed as the defaults of ``FusionWeights`` by hand, so a run never changes the product.
Query and chunk vectors are cached under ``--cache`` (evaluation only).
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from retrieval.evaluate import CachedEmbedder, Pair, read_pairs, runbook_index
from retrieval.lexicon import Lexicon
from retrieval.search import Fusion, FusionWeights, HybridSearcher, Method, dense_query


def _mrr(searcher: HybridSearcher, pairs: list[Pair], embedder: CachedEmbedder) -> float:
    vectors = embedder.embed([dense_query(p.query) for p in pairs])
    total = 0.0
    for pair, vector in zip(pairs, vectors, strict=True):
        hits = searcher.search(pair.query, 10, Method.HYBRID, vector=vector)
        rank = next((j for j, h in enumerate(hits, 1) if h.doc_id in pair.relevant), None)
        total += 1.0 / rank if rank else 0.0
    return total / len(pairs)


def main(argv: list[str] | None = None) -> int:
    from retrieval.embeddings import SentenceTransformerEmbedder

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpus", type=Path, required=True, help="runbooks-v1 folder")
    ap.add_argument("--queries", type=Path, default=Path("eval/retrieval/operator_queries.jsonl"))
    ap.add_argument("--cache", type=Path, default=Path("var/eval-cache"))
    ap.add_argument("--model", help="model name or folder (default: the bundled MiniLM)")
    args = ap.parse_args(argv)
    embedder = CachedEmbedder(SentenceTransformerEmbedder(args.model), args.cache)
    dev = [p for p in read_pairs(args.queries, "dev") if p.relevant]
    pairs = read_pairs(args.corpus / "pairs.jsonl")
    with runbook_index(args.corpus / "runbooks", embedder) as index:
        embedder.save()
        s = index.searcher
        steps: list[tuple[str, Lexicon, Fusion, FusionWeights]] = [
            ("dense+body, equal weights", Lexicon.empty(), Fusion.RELATIVE, FusionWeights()),
            ("+ synonym lexicon", Lexicon.load(), Fusion.RELATIVE, FusionWeights()),
            ("+ title/heading fields", Lexicon.load(), Fusion.LEARNED, FusionWeights()),
        ]
        for name, lexicon, fusion, weights in steps:
            s.lexicon, s.fusion, s.weights = lexicon, fusion, weights
            s.refresh()
            print(f"{name:32s} dev MRR {_mrr(s, dev, embedder):.4f}", flush=True)
        embedder.save()
        s.lexicon, s.fusion = Lexicon.load(), Fusion.LEARNED
        s.refresh()
        best: tuple[float, FusionWeights] | None = None
        grid = itertools.product(
            (0.6, 0.8, 1.0, 1.3, 1.7), (0.2, 0.35, 0.5, 0.7, 0.9), (0.0, 0.1, 0.2)
        )
        for body, title, headings in grid:
            s.weights = FusionWeights(1.0, body, title, headings)
            dev_mrr, pairs_mrr = _mrr(s, dev, embedder), _mrr(s, pairs, embedder)
            embedder.save()
            objective = (dev_mrr + pairs_mrr) / 2
            print(
                json.dumps(
                    {
                        "weights": [body, title, headings],
                        "dev": round(dev_mrr, 4),
                        "pairs": round(pairs_mrr, 4),
                    }
                ),
                flush=True,
            )
            if best is None or objective > best[0]:
                best = (objective, s.weights)
        assert best is not None
        print(f"best {best[1]} objective {best[0]:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
