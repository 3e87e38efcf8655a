"""Ingest a playbook folder into the vector store: validated first (one bad file changes
nothing), incremental (a document is rewritten when its content hash or its set of chunks
changed, e.g. a store written before expansion chunks existed or with another lexicon, or
when its vectors came from another embedder: a model or backend switch re-embeds; an
unchanged folder writes nothing), with each document's expansion chunk
(``retrieval/chunking.py``), and self-repairing (new chunks are written before stale ones
are deleted, so a crash leaves at worst a duplicate that the next ingest removes)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from retrieval.chunking import chunk_document
from retrieval.corpus import playbook_document
from retrieval.embeddings import Embedder, embedder_identity
from retrieval.lexicon import Lexicon
from retrieval.playbook import Playbook, PlaybookError, Status, lint_folder
from retrieval.store import ChunkStore

EMBEDDER_KEY = "embedder"  # chunk metadata: ``embedder_identity`` of what embedded it


class IngestError(ValueError):
    """The folder has invalid playbooks; nothing was written."""

    def __init__(self, errors: list[PlaybookError]) -> None:
        self.errors = errors
        lines = "\n".join(f"  {e}" for e in errors)
        super().__init__(f"{len(errors)} invalid playbook(s), nothing ingested:\n{lines}")


@dataclass(frozen=True, slots=True)
class IngestReport:
    added: list[str]
    updated: list[str]
    removed: list[str]
    unchanged: int
    chunks_written: int
    chunks_deleted: int

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


def ingest_folder(
    directory: Path,
    store: ChunkStore,
    embedder: Embedder,
    progress: Callable[[int, int], None] | None = None,
    lexicon: Lexicon | None = None,
) -> IngestReport:
    return ingest_folders([directory], store, embedder, progress, lexicon)


def ingest_folders(
    directories: Sequence[Path],
    store: ChunkStore,
    embedder: Embedder,
    progress: Callable[[int, int], None] | None = None,
    lexicon: Lexicon | None = None,
) -> IngestReport:
    """The store ends up holding exactly the non-deprecated playbooks of these folders
    (expansion chunks written with ``lexicon``, by default the bundled one)."""
    playbooks: list[Playbook] = []
    errors: list[PlaybookError] = []
    seen: dict[str, str] = {}
    for directory in directories:
        report = lint_folder(directory)
        errors += report.errors
        for pb in report.playbooks:
            if pb.id in seen:
                errors.append(
                    PlaybookError(pb.path, "id", f"{pb.id!r} is already used by {seen[pb.id]}")
                )
            seen[pb.id] = pb.path
            playbooks.append(pb)
    if errors:
        raise IngestError(errors)
    wanted = {
        pb.id: playbook_document(pb) for pb in playbooks if pb.meta.status is not Status.DEPRECATED
    }
    lexicon = lexicon if lexicon is not None else Lexicon.load()
    stored = store.all()
    identity = embedder_identity(embedder)
    stored_ids: dict[str, set[str]] = {}
    other_vectors: set[str] = set()  # documents embedded by another model or backend
    for chunk in stored:
        doc_id = str(chunk.metadata.get("doc_id"))
        stored_ids.setdefault(doc_id, set()).add(chunk.chunk_id)
        if chunk.metadata.get(EMBEDDER_KEY) != identity:
            other_vectors.add(doc_id)
    fresh = {doc_id: chunk_document(doc, lexicon=lexicon) for doc_id, doc in wanted.items()}
    to_write = [
        doc
        for doc_id, doc in sorted(wanted.items())
        if doc_id in other_vectors or stored_ids.get(doc_id) != {c.chunk_id for c in fresh[doc_id]}
    ]
    chunks = [c for doc in to_write for c in fresh[doc.doc_id]]
    if chunks:
        batch = 64
        for start in range(0, len(chunks), batch):
            part = chunks[start : start + batch]
            store.add(part, embedder.embed([c.text for c in part]), extra={EMBEDDER_KEY: identity})
            if progress:
                progress(min(start + batch, len(chunks)), len(chunks))
    kept = {c.chunk_id for doc_chunks in fresh.values() for c in doc_chunks}
    stale = [c.chunk_id for c in stored if c.chunk_id not in kept]
    store.delete(stale)
    previously = set(stored_ids)
    return IngestReport(
        added=sorted(d.doc_id for d in to_write if d.doc_id not in previously),
        updated=sorted(d.doc_id for d in to_write if d.doc_id in previously),
        removed=sorted(previously - set(wanted)),
        unchanged=len(wanted) - len(to_write),
        chunks_written=len(chunks),
        chunks_deleted=len(stale),
    )
