"""Validate the hand-written evaluation sets against the bundled playbooks.

Run from the repository root: ``python eval/check_sets.py``. Exits 1 and lists every
problem when a set breaks its contract (see eval/README.md); prints the counts otherwise.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
PLAYBOOKS = ROOT / "playbooks"
INCIDENTS = ROOT / "eval" / "incidents" / "incidents.jsonl"
LINES = ROOT / "eval" / "extraction" / "lines.jsonl"

STYLES = ("paraphrase", "terse", "dump", "chat")
SPLITS = ("dev", "test")
# Extractor components, in the order the split rule uses (null last).
COMPONENTS: tuple[str | None, ...] = (
    "link",
    "switch",
    "bgp",
    "server",
    "disk",
    "storage",
    "dns",
    "certificate",
    "service",
    "capacity",
    None,
)
# Interface naming styles the extraction set must cover (prefix of a labelled interface).
INTERFACE_STYLES = (
    "Ethernet",
    "et-",
    "xe-",
    "ge-",
    "HundredGigE",
    "TenGigabitEthernet",
    "Port-Channel",
    "po",
    "ae",
    "swp",
    "eth",
    "bond",
    "ens",
    "mgmt",
)
INCIDENT_KEYS = {"id", "text", "playbook", "also_ok", "style", "split"}
LINE_KEYS = {"id", "text", "device", "interface", "instance", "component", "fault_type", "split"}
MIN_INCIDENTS, MIN_MATCHED, MIN_UNMATCHED, MIN_LINES = 75, 62, 12, 110


def load_playbooks() -> dict[str, dict[str, Any]]:
    """Front matter of every bundled playbook, by id."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(PLAYBOOKS.glob("*/*.md")):
        text = path.read_text(encoding="utf-8")
        _, front, _ = text.split("---\n", 2)
        meta = yaml.safe_load(front)
        found[str(meta["id"])] = meta
    return found


def read_jsonl(path: Path, errors: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            errors.append(f"{path.name}:{number}: not JSON ({exc})")
    return rows


def expected_split(group_index: int, rank: int) -> str:
    """The split rule: alternate within a group, starting side given by the group's index."""
    return "dev" if (group_index + rank) % 2 == 0 else "test"


def check_common(
    rows: list[dict[str, Any]], keys: set[str], prefix: str, errors: list[str]
) -> None:
    ids = [row.get("id") for row in rows]
    for dup, n in Counter(ids).items():
        if n > 1:
            errors.append(f"{prefix}: id {dup} used {n} times")
    for number, row in enumerate(rows, 1):
        missing = keys - row.keys()
        extra = row.keys() - keys - {"note"}
        if missing or extra:
            errors.append(f"{row.get('id')}: missing {sorted(missing)} extra {sorted(extra)}")
        if row.get("id") != f"{prefix}-{number:03d}":
            errors.append(f"{row.get('id')}: expected id {prefix}-{number:03d}")
        if row.get("split") not in SPLITS:
            errors.append(f"{row.get('id')}: split {row.get('split')!r}")
        if not str(row.get("text", "")).strip():
            errors.append(f"{row.get('id')}: empty text")


def check_incidents(
    rows: list[dict[str, Any]], books: dict[str, dict[str, Any]], errors: list[str]
) -> None:
    check_common(rows, INCIDENT_KEYS, "inc", errors)
    order = sorted(books)
    ranks: Counter[str | None] = Counter()
    splits_by_book: dict[str, set[str]] = {}
    for row in rows:
        rid, book, text = row["id"], row["playbook"], str(row["text"]).lower()
        if book is not None and book not in books:
            errors.append(f"{rid}: unknown playbook {book}")
            ranks[book] += 1
            continue
        for other in row["also_ok"]:
            if other not in books or other == book:
                errors.append(f"{rid}: bad also_ok {other}")
        if row["style"] not in STYLES:
            errors.append(f"{rid}: style {row['style']!r}")
        for bid, meta in books.items():
            if bid in text or str(meta["title"]).lower() in text:
                errors.append(f"{rid}: copies the id or title of {bid}")
        group = order.index(book) if book is not None else len(order)
        if row["split"] != expected_split(group, ranks[book]):
            errors.append(f"{rid}: split {row['split']} breaks the rule")
        ranks[book] += 1
        if book is not None:
            splits_by_book.setdefault(book, set()).add(row["split"])
    matched = [r for r in rows if r["playbook"] is not None]
    if (
        len(rows) < MIN_INCIDENTS
        or len(matched) < MIN_MATCHED
        or len(rows) - len(matched) < MIN_UNMATCHED
    ):
        errors.append(f"incidents: {len(rows)} total, {len(matched)} matched: below the minimum")
    for bid in sorted(set(books) - {r["playbook"] for r in matched}):
        errors.append(f"incidents: no incident for playbook {bid}")
    for bid, seen in splits_by_book.items():
        if ranks[bid] >= 2 and seen != set(SPLITS):
            errors.append(f"incidents: playbook {bid} has {ranks[bid]} incidents, all in {seen}")


def check_lines(
    rows: list[dict[str, Any]], books: dict[str, dict[str, Any]], errors: list[str]
) -> None:
    check_common(rows, LINE_KEYS, "ex", errors)
    faults = {str(f) for meta in books.values() for f in meta["applies_to"]["fault_types"]}
    ranks: Counter[str | None] = Counter()
    for row in rows:
        rid, text = row["id"], str(row["text"])
        if row["component"] not in COMPONENTS:
            errors.append(f"{rid}: component {row['component']!r}")
            continue
        if row["fault_type"] is not None and row["fault_type"] not in faults:
            errors.append(f"{rid}: fault_type {row['fault_type']!r} not in the playbooks")
        for field in ("device", "interface", "instance"):
            value = row[field]
            if value is not None and value not in text:
                errors.append(f"{rid}: {field} {value!r} is not written in the text")
        instance = row["instance"]
        if instance is not None and ":" not in instance:
            errors.append(f"{rid}: instance {instance!r} is not host:port")
        group = COMPONENTS.index(row["component"])
        if row["split"] != expected_split(group, ranks[row["component"]]):
            errors.append(f"{rid}: split {row['split']} breaks the rule")
        ranks[row["component"]] += 1
    if len(rows) < MIN_LINES:
        errors.append(f"lines: {len(rows)} below {MIN_LINES}")
    interfaces = [str(r["interface"]) for r in rows if r["interface"]]
    for style in INTERFACE_STYLES:
        if not any(name.startswith(style) for name in interfaces):
            errors.append(f"lines: no interface in the {style} style")


def report(incidents: list[dict[str, Any]], lines: list[dict[str, Any]]) -> None:
    for split in SPLITS:
        inc = [r for r in incidents if r["split"] == split]
        styles = Counter(r["style"] for r in inc)
        unmatched = sum(r["playbook"] is None for r in inc)
        print(
            f"incidents {split}: {len(inc)} ({len(inc) - unmatched} matched, {unmatched} no match)"
            f" styles {dict(sorted(styles.items()))}"
        )
    for split in SPLITS:
        lin = [r for r in lines if r["split"] == split]
        comps = Counter(str(r["component"]) for r in lin)
        print(f"lines {split}: {len(lin)} components {dict(sorted(comps.items()))}")


def main() -> int:
    errors: list[str] = []
    books = load_playbooks()
    incidents = read_jsonl(INCIDENTS, errors)
    lines = read_jsonl(LINES, errors)
    if not errors:
        check_incidents(incidents, books, errors)
        check_lines(lines, books, errors)
    for error in errors:
        print(error, file=sys.stderr)
    if errors:
        return 1
    report(incidents, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
