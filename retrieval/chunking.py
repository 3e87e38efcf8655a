"""Documents to chunks: split at headings, pack small sections together, cut long ones at
paragraph boundaries. Every chunk carries its document's title (so a chunk from deep in a
runbook still says what it is about) and its document id. With a lexicon, one more chunk
per document (document expansion) says what it is about in operators' words."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from retrieval.playbook import split_sections

if TYPE_CHECKING:
    from retrieval.lexicon import Lexicon

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


EXPANSION = "expansion"  # the ``kind`` of a document's expansion chunk
_SYMPTOM_HEADINGS = frozenset(
    {"symptoms", "meaning", "impact", "summary", "description", "overview", "problem"}
)
_MARKUP = re.compile(
    r"[`*_>#\[\]|]|={3,}|-{3,}|<!--|-->|\(https?://[^)\s]{0,300}\)|https?://\S{0,300}"
)
_EXPANSION_WORDS = 90


def expansion_text(doc: Document, lexicon: Lexicon) -> str:
    """What the document is about, in the words operators use: its title (with the alert
    or file name spelled as words), the start of its symptom/meaning sections (else of its
    text), then for every lexicon concept found there the other spellings of that concept
    ("crash looping" → "keeps restarting, back off, keeps dying"). Embedded as one extra
    chunk, so the dense side also meets operator wording; built at ingest, free at query."""
    from retrieval.bm25 import words

    sections = split_sections(doc.text)
    about = [s.text for s in sections if s.heading.lower().strip(" :") in _SYMPTOM_HEADINGS]
    source = " ".join(about) if about else " ".join(s.text for s in sections)
    summary = " ".join(_MARKUP.sub(" ", source).split()[:_EXPANSION_WORDS])
    found = dict.fromkeys(c[1:] for c in lexicon.concepts(words(f"{doc.title} {summary}")))
    spelled = [", ".join(dict.fromkeys(lexicon.spellings.get(concept, ()))) for concept in found]
    return "\n".join(p for p in (summary, "; ".join(spelled)) if p)


def chunk_document(
    doc: Document, max_chars: int = 900, lexicon: Lexicon | None = None
) -> list[Chunk]:
    """Chunks whose text (without the title line) stays within ``max_chars``; with a
    ``lexicon``, one more chunk of kind ``expansion`` (``expansion_text``) at the end."""
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
    chunks = [
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
    if lexicon is not None:
        i = len(chunks)
        chunks.append(
            Chunk(
                # the lexicon's fingerprint in the id: a lexicon edit rewrites it at ingest
                chunk_id=f"{doc.doc_id}::{short}::{i}-{lexicon.fingerprint[:8]}",
                doc_id=doc.doc_id,
                index=i,
                section="",
                text=f"{doc.title}\n{expansion_text(doc, lexicon)}".strip(),
                metadata={**chunks[0].metadata, "section": "", "chunk": i, "kind": EXPANSION},
            )
        )
    return chunks
