"""Turning folders into indexable documents: our playbooks, or external runbook files."""

from __future__ import annotations

import re
from pathlib import Path

from retrieval.chunking import Document, humanise
from retrieval.playbook import Playbook, content_hash

_H1 = re.compile(r"^#[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_FRONT = re.compile(r"\A---\r?\n.*?\r?\n---[ \t]*\r?\n", re.DOTALL)


def playbook_document(pb: Playbook) -> Document:
    m = pb.meta
    applies = ", ".join(m.applies_to.components + m.applies_to.fault_types)
    header = f"{m.title}\naction: {humanise(m.action)}; applies to: {applies}"
    return Document(
        doc_id=m.id,
        title=header,
        text=pb.body,
        content_hash=pb.content_hash,
        metadata={
            "status": m.status.value,
            "action": m.action,
            "risk": m.risk.value,
            "blast_radius": m.blast_radius,
            "path": pb.path,
            "playbook_title": m.title,
        },
    )


def runbook_title(relative: Path, text: str) -> str:
    """The first H1, plus the file's name spelled as words (``KubeAPIDown`` → ``Kube API
    Down``) and, for README/index files, the folder they describe."""
    h1 = _H1.search(text)
    parts = [h1.group(1).strip()] if h1 else []
    stem = relative.stem
    if stem.lower() in {"readme", "index", "_index"}:
        stem = relative.parent.name
    name = humanise(stem)
    if not parts or name.lower() not in parts[0].lower():
        parts.append(name)
    return " — ".join(parts)


def runbook_documents(directory: Path, status: str = "vetted") -> list[Document]:
    """Every ``*.md`` under ``directory`` as a document whose id is its relative path."""
    docs = []
    for path in sorted(directory.rglob("*.md")):
        relative = path.relative_to(directory)
        text = path.read_text(encoding="utf-8", errors="replace")
        body = _FRONT.sub("", text, count=1)
        docs.append(
            Document(
                doc_id=relative.as_posix(),
                title=runbook_title(relative, body),
                text=body,
                content_hash=content_hash(text),
                metadata={"status": status, "path": relative.as_posix()},
            )
        )
    return docs
