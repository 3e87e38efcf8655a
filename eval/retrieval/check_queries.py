"""Validate operator_queries.jsonl against the runbooks-v1 corpus.

Checks that every line parses, ids are unique, relevant paths exist, no query leaks
an alert name or the title of one of its relevant runbooks, and that the counts the
evaluation relies on hold (answerable / no-answer queries, runbooks, sources, styles,
splits). Exit status 1 on any error; warnings are printed but do not fail.

Usage: python eval/retrieval/check_queries.py [--corpus DIR] [--queries FILE]
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
from pathlib import Path
from typing import Any

STYLES = {"paraphrase", "terse", "dump", "chat"}
SPLITS = {"dev", "test"}
# The corpus lies beside the checkout (../shared), as the tests expect it.
DEFAULT_CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "runbooks-v1"
SOURCES = {"prometheus-operator", "openshift", "gitlab", "cnpg", "cortex"}
CAMEL = re.compile(r"^[A-Za-z0-9_]*[a-z0-9][A-Z][A-Za-z0-9_]*$")


def norm(text: str) -> str:
    """Lower-case and collapse everything that is not a letter or digit to one space."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def split_camel(name: str) -> str:
    """KubePodCrashLooping -> 'kube pod crash looping' (runs of capitals kept together)."""
    return norm(re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name))


def runbook_title(path: Path) -> str:
    """The title a reader sees: front-matter `title:`, else the first heading."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for line in lines[:15]:
        if line.startswith("title:"):
            return line.split(":", 1)[1].strip().strip("\"'")
    for i, line in enumerate(lines):
        if line.startswith("# "):
            return line[2:].strip(" #`*")
        if i + 1 < len(lines) and re.fullmatch(r"=+", lines[i + 1].strip()) and line.strip():
            return line.strip()
    return ""


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--queries", type=Path, default=here / "operator_queries.jsonl")
    args = ap.parse_args(argv)
    runbooks = args.corpus / "runbooks"
    errors: list[str] = []
    warnings: list[str] = []

    alert_names: set[str] = set()
    for line in (args.corpus / "pairs-full.jsonl").read_text(encoding="utf-8").splitlines():
        alert = json.loads(line)["alert"]
        if CAMEL.match(alert):
            alert_names.add(alert)

    rows: list[dict[str, Any]] = []
    for n, line in enumerate(args.queries.read_text(encoding="utf-8").splitlines(), 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"line {n}: not JSON ({exc})")
            continue
        if set(row) != {"id", "query", "relevant", "style", "split"}:
            errors.append(f"line {n}: keys {sorted(row)}")
            continue
        rows.append(row)

    ids = collections.Counter(str(r["id"]) for r in rows)
    errors += [f"duplicate id {i}" for i, c in ids.items() if c > 1]
    titles: dict[str, str] = {}
    for r in rows:
        rid, query, rel = str(r["id"]), str(r["query"]), r["relevant"]
        if not isinstance(rel, list):
            errors.append(f"{rid}: relevant is not a list")
            continue
        if r["style"] not in STYLES or r["split"] not in SPLITS:
            errors.append(f"{rid}: bad style/split {r['style']}/{r['split']}")
        if not re.fullmatch(r"(oq|na)-\d{3}", rid) or (rid.startswith("na-") != (rel == [])):
            errors.append(f"{rid}: id prefix does not match relevant={rel}")
        lowered, squashed = query.lower(), norm(query).replace(" ", "")
        for name in alert_names:
            if name.lower() in lowered or name.lower() in squashed:
                errors.append(f"{rid}: contains alert name {name}")
        for path in rel:
            file = runbooks / str(path)
            if not file.is_file():
                errors.append(f"{rid}: missing runbook {path}")
                continue
            title = titles.setdefault(str(path), runbook_title(file))
            stem_words = split_camel(file.stem)
            for phrase in {norm(title), stem_words}:
                if phrase and len(phrase.split()) >= 2 and f" {phrase} " in f" {norm(query)} ":
                    errors.append(f"{rid}: contains title/name words '{phrase}' of {path}")
            words = norm(title).split()
            for k in range(len(words) - 2):
                run = " ".join(words[k : k + 3])
                if f" {run} " in f" {norm(query)} ":
                    warnings.append(f"{rid}: shares the title run '{run}' with {path}")

    answerable = [r for r in rows if r["relevant"]]
    no_answer = [r for r in rows if not r["relevant"]]
    by_set = collections.Counter(tuple(r["relevant"]) for r in answerable)
    paths = {p for r in answerable for p in r["relevant"]}
    sources = collections.Counter(str(p).split("/")[0] for p in paths)
    if len(answerable) < 170:
        errors.append(f"only {len(answerable)} answerable queries (< 170)")
    if len(no_answer) < 40:
        errors.append(f"only {len(no_answer)} no-answer queries (< 40)")
    if len(by_set) < 60:
        errors.append(f"only {len(by_set)} targeted runbooks (< 60)")
    if set(sources) != SOURCES:
        errors.append(f"sources targeted: {sorted(sources)}")
    errors += [f"{c} queries target {s}" for s, c in by_set.items() if c > 3]
    for label, group in (("answerable", answerable), ("no-answer", no_answer)):
        styles = collections.Counter(str(r["style"]) for r in group)
        splits = collections.Counter(str(r["split"]) for r in group)
        for s in STYLES:
            if not 0.15 <= styles[s] / len(group) <= 0.35:
                errors.append(f"{label}: style {s} is {styles[s]}/{len(group)}")
        if not 0.4 <= splits["dev"] / len(group) <= 0.6:
            errors.append(f"{label}: dev split {splits['dev']}/{len(group)}")
        print(
            f"{label}: {len(group)} queries, styles {dict(sorted(styles.items()))},"
            f" splits {dict(sorted(splits.items()))}"
        )
    per_source = collections.Counter(
        src for r in answerable for src in {str(p).split("/")[0] for p in r["relevant"]}
    )
    print(f"targeted runbook sets: {len(by_set)}, distinct relevant paths: {len(paths)}")
    print(f"relevant paths per source: {dict(sorted(sources.items()))}")
    print(f"queries with a relevant runbook from each source: {dict(sorted(per_source.items()))}")

    for w in warnings:
        print("warning:", w)
    for e in errors:
        print("error:", e)
    print("OK" if not errors else f"{len(errors)} error(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
