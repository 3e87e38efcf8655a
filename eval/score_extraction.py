"""Accuracy per field of the deterministic extractor on ``extraction/lines.jsonl``.

Run from the repository root: ``python eval/score_extraction.py --split dev`` (tune on dev
only; ``--split test`` is measured once and reported). Retrieval evidence comes from the
bundled playbooks embedded with the bundled MiniLM into a temporary Chroma folder;
``--no-retrieval`` measures the text-only extractor. Fault types count as right within the
near-synonym groups listed in ``eval/README.md``; names must be exact.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SYNONYMS = [
    {"link_flap", "flapping"}, {"link_down", "down"}, {"crc_errors", "fcs_errors"},
    {"bgp_down", "bgp_session_down"}, {"pool_exhausted", "no_free_leases"},
    {"ecmp_imbalance", "load_imbalance"}, {"optic_degraded", "low_rx_power"},
    {"packet_loss", "drops"}, {"thermal", "overheating"}, {"disk_full", "filesystem_full"},
    {"oom", "memory_exhausted"}, {"memory_errors", "ecc_errors"}, {"clock_skew", "time_drift"},
    {"high_cpu", "control_plane"}, {"unresponsive", "hung"}, {"dns_failure", "servfail"},
    {"backend_down", "health_check_failed"},
]  # fmt: skip
FIELDS = ("device", "interface", "instance", "component", "fault_type")


def same_fault(a: str | None, b: str | None) -> bool:
    a = None if a == "unknown" else a
    b = None if b == "unknown" else b
    return a == b or any(a in g and b in g for g in SYNONYMS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("dev", "test", "all"), default="dev")
    parser.add_argument("--no-retrieval", action="store_true")
    parser.add_argument("--errors", action="store_true", help="print every wrong field")
    args = parser.parse_args()

    from bot.native import load_torch_first

    load_torch_first()
    from bot.extraction.rules import Vocabulary, extract

    rows = [json.loads(line) for line in (ROOT / "eval/extraction/lines.jsonl").open()]
    rows = [r for r in rows if args.split == "all" or r["split"] == args.split]
    vocabulary = Vocabulary.from_folders([ROOT / "playbooks"])
    search = None
    if not args.no_retrieval:
        from retrieval.embeddings import SentenceTransformerEmbedder
        from retrieval.ingest import ingest_folders
        from retrieval.search import HybridSearcher
        from retrieval.store import ChunkStore, chroma_client

        embedder = SentenceTransformerEmbedder()
        folder = tempfile.mkdtemp(prefix="npo-extract-eval-")
        store = ChunkStore(chroma_client(Path(folder)), embedder)
        ingest_folders([ROOT / "playbooks"], store, embedder)
        searcher = HybridSearcher(store, embedder)
        search = searcher.search
    right = dict.fromkeys(FIELDS, 0)
    for row in rows:
        hits = [(h.doc_id, h.similarity) for h in search(row["text"], 3)] if search else []
        got = extract(row["text"], vocabulary, hits)
        values = {
            "device": got.device or None,
            "interface": got.interface or None,
            "instance": got.instance or None,
            "component": got.component,
            "fault_type": got.fault_type,
        }
        for f in FIELDS:
            ok = same_fault(values[f], row[f]) if f == "fault_type" else values[f] == row[f]
            right[f] += ok
            if not ok and args.errors:
                print(f"{row['id']} {f}: got {values[f]!r}, want {row[f]!r} | {row['text'][:90]}")
    mode = "text only" if args.no_retrieval else "text + retrieval"
    print(f"split={args.split} rows={len(rows)} ({mode})")
    for f in FIELDS:
        print(f"  {f:<11} {right[f] / len(rows):6.1%}  ({right[f]}/{len(rows)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
