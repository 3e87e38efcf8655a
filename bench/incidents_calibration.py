"""``python -m bench.incidents_calibration --split dev``: is the similarity handed to the
core a probability an operator can trust? The bundled playbooks are indexed in a temporary
store, the calibration is fitted from their self-queries (as the bot does at ingest), and
each incident of ``eval/incidents/incidents.jsonl`` of the split is searched: its top hit is
right when it is the incident's playbook or one of its ``also_ok``.

Prints, at thresholds 0.6/0.7/0.8, the share of incidents whose top hit is right with
p ≥ τ and wrong with p ≥ τ, Brier and ECE of the top hit's p, and the calibration's own
held-out reliability on the self-queries. The incidents are never used to fit anything;
report ``--split test`` once, at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bot.native import load_torch_first
from bot.settings import PROJECT_ROOT, Settings

THRESHOLDS = (0.6, 0.7, 0.8)


def read_incidents(path: Path, split: str) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [r for r in rows if r["split"] == split]


def run(
    split: str,
    incidents_path: Path,
    playbooks: Path,
    backend: str,
    no_answer_weight: float | None = None,
) -> dict[str, Any]:
    load_torch_first()
    from retrieval.calibration import (
        NO_ANSWER_WEIGHT,
        FittedCalibration,
        fit_calibration,
        reliability,
    )
    from retrieval.embeddings import make_embedder
    from retrieval.ingest import ingest_folder
    from retrieval.search import HybridSearcher
    from retrieval.store import ChunkStore, chroma_client

    incidents = read_incidents(incidents_path, split)
    embedder = make_embedder(backend)
    with tempfile.TemporaryDirectory(prefix="npo-cal-") as tmp:
        folder = Path(tmp) / "playbooks"
        shutil.copytree(playbooks, folder, ignore=shutil.ignore_patterns("policies"))
        store = ChunkStore(chroma_client(Path(tmp) / "chroma"), embedder)
        ingest_folder(folder, store, embedder)
        searcher = HybridSearcher(store, embedder)
        fitted = fit_calibration(
            searcher,
            no_answer_weight=NO_ANSWER_WEIGHT if no_answer_weight is None else no_answer_weight,
        )
        searcher.calibration = fitted
        rows = []
        for inc in incidents:
            hits = searcher.search(inc["text"], 5)
            ok = {inc["playbook"], *inc["also_ok"]} - {None}
            top = hits[0] if hits else None
            rows.append(
                {
                    "id": inc["id"],
                    "top": top.doc_id if top else None,
                    "p": round(top.similarity, 4) if top else 0.0,
                    "right": bool(top and top.doc_id in ok),
                    "matched": inc["playbook"] is not None,
                }
            )
    p = np.asarray([r["p"] for r in rows])
    y = np.asarray([1.0 if r["right"] else 0.0 for r in rows])
    at = {
        str(t): {
            "right": round(float(np.mean((p >= t) & (y == 1))), 4),
            "wrong": round(float(np.mean((p >= t) & (y == 0))), 4),
        }
        for t in THRESHOLDS
    }
    report = fitted.report if isinstance(fitted, FittedCalibration) else {"fallback": True}
    return {
        "split": split,
        "incidents": len(rows),
        "top_right": round(float(y.mean()), 4),
        "at_threshold": at,
        "top1": reliability(p, y),
        "self_queries": {
            k: report.get(k) for k in ("documents", "self_queries", "examples", "held_out_top1")
        },
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--split", choices=["dev", "test"], required=True)
    ap.add_argument(
        "--incidents", type=Path, default=PROJECT_ROOT / "eval" / "incidents" / "incidents.jsonl"
    )
    ap.add_argument("--playbooks", type=Path, default=PROJECT_ROOT / "playbooks")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--rows", action="store_true", help="print every incident's top hit")
    ap.add_argument("--no-answer-weight", type=float, help="default: the product's")
    args = ap.parse_args(argv)
    backend = Settings().embedding_backend  # the deployment's (NPO_EMBEDDING_BACKEND)
    result = run(args.split, args.incidents, args.playbooks, backend, args.no_answer_weight)
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"{result['incidents']} incidents ({args.split}); top hit right {result['top_right']:.3f}"
    )
    print(f"{'tau':>5s} {'right, p>=tau':>14s} {'wrong, p>=tau':>14s}")
    for t, v in result["at_threshold"].items():
        print(f"{t:>5s} {v['right']:14.3f} {v['wrong']:14.3f}")
    top1 = result["top1"]
    print(f"top hit: Brier {top1['brier']}, ECE {top1['ece']}")
    for row in top1["table"]:
        print(
            f"  p {row['bin']}: n {row['n']:3d}  mean p {row['mean_p']:.3f}"
            f"  right {row['right']:.3f}"
        )
    sq = result["self_queries"]
    held = sq.get("held_out_top1") or {}
    print(
        f"calibration: {sq.get('documents')} playbooks, {sq.get('self_queries')} self-queries; "
        f"held-out top-1 Brier {held.get('brier')}, ECE {held.get('ece')}"
    )
    if args.rows:
        for r in result["rows"]:
            mark = "ok " if r["right"] else "BAD"
            print(f"  {mark} {r['id']} p {r['p']:.2f} {r['top']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
