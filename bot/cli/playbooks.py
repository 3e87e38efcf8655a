"""``npo playbooks ...``, ``npo search`` and ``npo eval retrieval``: the retrieval edge."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bot.cli.progress import progress_bar
from bot.settings import Settings
from retrieval.playbook import Status, lint_folder

INCIDENTS_FILE = Path("eval/incidents/incidents.jsonl")  # npo eval incidents --file


def _fail(message: str, code: int = 1) -> int:
    print(f"npo: error: {message}", file=sys.stderr)
    return code


def cmd_lint(args: argparse.Namespace, settings: Settings) -> int:
    directory: Path = args.dir or settings.playbooks_dir
    report = lint_folder(directory)
    for error in report.errors:
        print(error, file=sys.stderr)
    counts = {s: sum(1 for p in report.playbooks if p.meta.status is s) for s in Status}
    summary = ", ".join(f"{n} {s.value}" for s, n in counts.items() if n)
    print(
        f"{directory}: {len(report.playbooks)} valid ({summary or 'none'}), "
        f"{len(report.errors)} invalid"
    )
    return 0 if report.ok else 1


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from bot import wiring
    from retrieval.calibration import FittedCalibration
    from retrieval.ingest import IngestError, ingest_folder

    directory: Path = args.dir or settings.playbooks_dir
    if lint_folder(directory).errors:  # fail before loading the model
        return cmd_lint(argparse.Namespace(dir=directory), settings)
    embedder = wiring.embedder(settings)
    store = wiring.chunk_store(settings, embedder)
    bar = progress_bar(0, "embed", "chunk")
    try:
        report = ingest_folder(directory, store, embedder, bar.set_progress)
    except IngestError as exc:
        return _fail(str(exc))
    finally:
        bar.close()
    print(
        f"{directory}: {len(report.added)} added, {len(report.updated)} updated, "
        f"{len(report.removed)} removed, {report.unchanged} unchanged "
        f"({report.chunks_written} chunks written, {report.chunks_deleted} deleted)"
    )
    # Refit the similarity calibration when the indexed playbooks changed.
    fitted = wiring.refit_calibration(wiring.searcher(settings, store, embedder), settings)
    if isinstance(fitted, FittedCalibration):
        top1 = fitted.report.get("held_out_top1")
        if isinstance(top1, dict):
            print(f"calibration: held-out top-1 Brier {top1['brier']}, ECE {top1['ece']}")
    return 0


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from retrieval.importer import import_runbooks

    status = Status(args.status)
    if status is Status.VETTED and not args.reviewer:
        return _fail("--status vetted needs --reviewer (someone who is not an author)", 2)
    report = import_runbooks(
        args.source, args.dest, status, args.author or ["import"], args.reviewer or [], args.license
    )
    print(f"{args.dest}: {len(report.written)} playbook(s) written, {report.unchanged} unchanged")
    return 0


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    from bot import wiring
    from retrieval.search import Method

    embedder = wiring.embedder(settings)
    searcher = wiring.searcher(settings, wiring.chunk_store(settings, embedder), embedder)
    wiring.refit_calibration(searcher, settings)
    hits = searcher.search(args.query, args.k, Method(args.method))
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "playbook": h.doc_id,
                        "similarity": round(h.similarity, 4),
                        "cosine": round(h.cosine, 4),
                        "title": h.title,
                    }
                    for h in hits
                ]
            )
        )
        return 0
    if not hits:
        print("no vetted playbook matches (run `npo playbooks ingest` first?)")
    for rank, h in enumerate(hits, 1):
        print(
            f"{rank}. {h.doc_id}  similarity {h.similarity:.2f} (cosine {h.cosine:.2f})  "
            f"{h.metadata.get('playbook_title', h.title)}"
        )
    return 0


def cmd_eval_retrieval(args: argparse.Namespace, settings: Settings) -> int:
    from bot import wiring
    from retrieval.evaluate import PairsError, evaluate, read_pairs

    if not args.corpus.is_dir():
        return _fail(f"--corpus {args.corpus}: folder not found", 2)
    try:
        pairs = read_pairs(args.pairs, args.split)
    except (OSError, PairsError) as exc:
        return _fail(str(exc), 2)
    embedder = wiring.embedder(settings)
    bar = progress_bar(len(pairs), "queries", "query")
    result = evaluate(
        args.corpus,
        pairs,
        embedder,
        args.k,
        lambda _s, n, _t: bar.set_progress(n, _t),
        threshold=args.threshold,
        cache=args.cache,
    )
    bar.close()
    unknown = result["unknown_targets"]
    if isinstance(unknown, list) and unknown:
        print(f"warning: {len(unknown)} target path(s) are not in the corpus", file=sys.stderr)
    if args.json:
        keys = ["queries", "methods", "no_answer", "answerable_at_threshold", "timing"]
        print(json.dumps({k: result[k] for k in keys + (["misses"] if args.misses else [])}))
        return 0
    methods, timing, no_answer = result["methods"], result["timing"], result["no_answer"]
    assert isinstance(methods, dict) and isinstance(timing, dict) and isinstance(no_answer, dict)
    print(
        f"{result['queries']} answerable queries over {result['documents']} documents "
        f"({result['chunks']} chunks)\n"
    )
    print(f"{'method':8s} {'recall@1':>9s} {'recall@3':>9s} {'recall@5':>9s} {'MRR':>7s}")
    for name, m in methods.items():
        print(
            f"{name:8s} {m['recall@1']:9.3f} {m['recall@3']:9.3f} {m['recall@5']:9.3f} "
            f"{m['mrr']:7.3f}"
        )
    if no_answer["queries"]:
        print(
            f"\nno-answer queries: {no_answer['queries']}; top candidate confidently wrong "
            f"(p >= {no_answer['threshold']}): {no_answer['confidently_wrong']:.3f}"
        )
    at = result["answerable_at_threshold"]
    assert isinstance(at, dict)
    print(
        f"answerable, top candidate with p >= {args.threshold}: right {at['right_confident']:.3f}"
        f", wrong {at['wrong_confident']:.3f}"
    )
    calibration = result["calibration"]
    if isinstance(calibration, dict) and calibration:
        top1 = calibration.get("held_out_top1")
        if isinstance(top1, dict):
            print(
                f"calibration (self-queries, held-out documents, top-1): Brier {top1['brier']}"
                f", ECE {top1['ece']}"
            )
    print(
        f"\nindexing {timing['index_s']:.1f} s; query p50 hybrid "
        f"{timing['query_ms_p50']:.1f} ms, dense-only {timing['dense_query_ms_p50']:.1f} ms"
    )
    misses = result["misses"]
    if args.misses and isinstance(misses, list):
        print(f"\nhybrid misses at rank 1 ({len(misses)}):")
        for miss in misses:
            query = " ".join(str(miss["query"]).split())[:100]
            print(f"- {miss['id']} rank {miss['rank']}: {query}")
            print(f"    want {miss['want']}\n    got  {miss['got']}")
    return 0


def _eval_policy(args: argparse.Namespace, settings: Settings) -> int:
    from bot.reporting.policy_eval import cmd_eval_policy

    return cmd_eval_policy(args, settings)


def _eval_incidents(args: argparse.Namespace, settings: Settings) -> int:
    from bot.reporting.incident_eval import cmd_eval_incidents

    return cmd_eval_incidents(args, settings)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    pb = sub.add_parser("playbooks", help="lint, ingest and import playbooks").add_subparsers(
        dest="playbooks_command", required=True
    )
    lint = pb.add_parser("lint", help="validate a playbook folder (exit 1 on errors)")
    lint.add_argument("dir", nargs="?", type=Path)
    lint.set_defaults(func=cmd_lint)
    ingest = pb.add_parser("ingest", help="index a playbook folder into the vector store")
    ingest.add_argument("dir", nargs="?", type=Path)
    ingest.set_defaults(func=cmd_ingest)
    imp = pb.add_parser("import", help="convert external runbooks into playbooks")
    imp.add_argument("source", type=Path)
    imp.add_argument("--dest", type=Path, default=Path("playbooks/imported"))
    imp.add_argument("--status", choices=[s.value for s in Status], default="draft")
    imp.add_argument("--author", action="append")
    imp.add_argument("--reviewer", action="append")
    imp.add_argument("--license", help="licence when the source has no runbooks_index.jsonl")
    imp.set_defaults(func=cmd_import)

    search = sub.add_parser("search", help="search the vetted playbooks")
    search.add_argument("query")
    search.add_argument("--k", type=int, default=5)
    search.add_argument("--method", choices=["hybrid", "dense", "bm25"], default="hybrid")
    search.add_argument("--json", action="store_true")
    search.set_defaults(func=cmd_search)

    ev = sub.add_parser("eval", help="evaluations").add_subparsers(
        dest="eval_command", required=True
    )
    ret = ev.add_parser("retrieval", help="recall@k and MRR of hybrid, dense and BM25")
    ret.add_argument("--corpus", type=Path, required=True)
    ret.add_argument("--pairs", type=Path, required=True)
    ret.add_argument("--k", type=int, default=5)
    ret.add_argument("--json", action="store_true")
    ret.add_argument("--split", help="only the rows of this split (dev or test)")
    ret.add_argument("--misses", action="store_true", help="print the hybrid misses")
    ret.add_argument(
        "--threshold", type=float, default=0.7, help="decision threshold for 'confident'"
    )
    ret.add_argument(
        "--cache", type=Path, help="reuse corpus vectors from this folder (queries are not cached)"
    )
    ret.set_defaults(func=cmd_eval_retrieval)
    pol = ev.add_parser("policy", help="off-policy estimates of each threshold policy")
    pol.add_argument("--json", action="store_true")
    pol.add_argument("--clip", type=float, default=50.0, help="importance-weight clip")
    pol.set_defaults(func=_eval_policy)
    inc = ev.add_parser("incidents", help="right and wrong recommendations on labelled incidents")
    inc.add_argument("--file", type=Path, default=INCIDENTS_FILE)
    inc.add_argument("--split", choices=["dev", "test", "all"], default="test")
    inc.add_argument("--passes", type=int, default=3, help="pass 1: cold start; then feedback")
    inc.add_argument("--context", choices=["allow", "text"], default="allow")
    inc.add_argument("--tick", action="store_true", help="a monitor tick between passes")
    inc.add_argument("--data-dir", type=Path, help="keep the state here (default: temporary)")
    inc.add_argument("--misses", action="store_true")
    inc.add_argument("--json", action="store_true")
    inc.set_defaults(func=_eval_incidents)
