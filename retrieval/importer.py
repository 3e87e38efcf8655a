"""Convert a folder of external runbooks into playbook files (``draft`` unless told
otherwise), keeping where each came from and under which licence."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from retrieval.corpus import runbook_title
from retrieval.playbook import Status, parse_playbook

_FRONT = re.compile(r"\A---\r?\n.*?\r?\n---[ \t]*\r?\n", re.DOTALL)


@dataclass(frozen=True, slots=True)
class ImportReport:
    written: list[Path]
    unchanged: int


def _slug(relative: Path) -> str:
    raw = relative.with_suffix("").as_posix().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", raw).strip("-")
    return ("ext-" + slug)[:80].rstrip("-")


def _provenance(source_dir: Path) -> tuple[Path, dict[str, dict[str, str]]]:
    """The nearest ``runbooks_index.jsonl`` in the folder or its ancestors (repo, commit,
    path, licence per runbook), and the folder its paths are relative to."""
    for folder in [source_dir, *list(source_dir.resolve().parents)[:3]]:
        index = folder / "runbooks_index.jsonl"
        if index.is_file():
            rows = {}
            for line in index.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    rows[str(row["runbook"])] = row
            base = folder / "runbooks" if (folder / "runbooks").is_dir() else folder
            return base.resolve(), rows
    return source_dir.resolve(), {}


def import_runbooks(
    source_dir: Path,
    dest_dir: Path,
    status: Status = Status.DRAFT,
    authors: Sequence[str] = ("import",),
    reviewers: Sequence[str] = (),
    licence: str | None = None,
) -> ImportReport:
    """Write one playbook per ``*.md`` of ``source_dir`` into ``dest_dir``.

    Every file is rendered and validated before any is written; the files are then moved
    into place one by one with atomic renames.
    """
    if not source_dir.is_dir():
        raise ValueError(f"{source_dir}: runbook folder not found")
    base, provenance = _provenance(source_dir)
    today = dt.date.today()
    rendered: dict[Path, str] = {}
    for path in sorted(source_dir.rglob("*.md")):
        relative = path.relative_to(source_dir)
        text = _FRONT.sub("", path.read_text(encoding="utf-8", errors="replace"), count=1)
        resolved = path.resolve()
        key = resolved.relative_to(base).as_posix() if resolved.is_relative_to(base) else ""
        origin = provenance.get(key, {})
        source = (
            f"{origin['repo']}@{origin['commit']}:{origin['path']}"
            if origin
            else relative.as_posix()
        )
        meta: dict[str, object] = {
            "id": _slug(relative),
            "title": runbook_title(relative, text),
            "action": "collect_diagnostics",
            "applies_to": {"components": [relative.parts[0]] if len(relative.parts) > 1 else []},
            "risk": "low",
            "blast_radius": 0,
            "status": status.value,
            "authors": list(authors),
            "reviewers": list(reviewers),
            "version": 1,
            "source": source,
            "license": origin.get("license") or licence or "unknown",
        }
        if status is Status.VETTED:
            meta["reviewed_at"] = today.isoformat()
        document = (
            "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n\n" + text
        )
        target = dest_dir / f"{meta['id']}.md"
        parse_playbook(document, target)  # fails before anything is written
        rendered[target] = document
    dest_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for target, document in rendered.items():
        if target.exists() and target.read_text(encoding="utf-8") == document:
            continue
        fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=".import-", suffix=".md")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(document)
        os.replace(tmp, target)
        written.append(target)
    return ImportReport(written, len(rendered) - len(written))
