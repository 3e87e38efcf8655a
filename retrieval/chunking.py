"""Documents to chunks: split at headings, pack small sections together, cut long ones at
paragraph boundaries. Every chunk carries its document's title (so a chunk from deep in a
runbook still says what it is about) and its document id."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from retrieval.playbook import split_sections

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def humanise(name: str) -> str:
    """``KubePodCrashLooping`` → ``Kube Pod Crash Looping``; ``disk_full-v2`` → ``disk full v2``."""
    spaced = _CAMEL.sub(" ", name)
    return re.sub(r"[_\-./]+", " ", spaced).strip()


@dataclass(frozen=True, slots=True)
class Document:
    """Anything indexable: a playbook or an external runbook file."""

    doc_id: str
    title: str
    text: str
    content_hash: str
    metadata: dict[str, str | int | float | bool] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Chunk:
    chunk_id: str
    doc_id: str
    index: int
    section: str
    text: str
    metadata: dict[str, str | int | float | bool]


def _pieces(text: str, limit: int) -> list[str]:
    """Cut at blank lines, then at line ends, then hard, so no piece exceeds ``limit``."""
    out: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        para = para.strip()
        while len(para) > limit:
            cut = para.rfind("\n", 0, limit)
            cut = cut if cut > limit // 3 else para.rfind(" ", 0, limit)
            cut = cut if cut > limit // 3 else limit
            out.append(para[:cut].strip())
            para = para[cut:].strip()
        if para:
            out.append(para)
    return out


def chunk_document(doc: Document, max_chars: int = 900) -> list[Chunk]:
    """Chunks whose text (without the title line) stays within ``max_chars``."""
    groups: list[tuple[str, str]] = []
    for section in split_sections(doc.text):
        heading = section.heading
        for piece in _pieces(section.text, max(80, max_chars - len(heading) - 1)) or [""]:
            if not piece and not heading:
                continue
            if groups and len(groups[-1][1]) + len(heading) + len(piece) + 2 <= max_chars:
                first, body = groups[-1]
                groups[-1] = (first, "\n".join(p for p in (body, heading, piece) if p))
            else:
                groups.append((heading, "\n".join(p for p in (heading, piece) if p)))
    if not groups:
        groups = [("", "")]
    short = doc.content_hash[:12]
    return [
        Chunk(
            chunk_id=f"{doc.doc_id}::{short}::{i}",
            doc_id=doc.doc_id,
            index=i,
            section=heading,
            text=f"{doc.title}\n{body}".strip(),
            metadata={
                **doc.metadata,
                "doc_id": doc.doc_id,
                "title": doc.title,
                "section": heading,
                "chunk": i,
                "content_hash": doc.content_hash,
            },
        )
        for i, (heading, body) in enumerate(groups)
    ]
