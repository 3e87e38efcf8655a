"""Vectors of two embedders never share an index or a calibration: ingest re-embeds the
documents another embedder wrote, and the calibration's fingerprint changes with it."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from retrieval.calibration import fingerprint
from retrieval.embeddings import FloatMatrix, SentenceTransformerEmbedder, embedder_identity
from retrieval.ingest import EMBEDDER_KEY, ingest_folder
from retrieval.search import HybridSearcher
from retrieval.store import ChunkStore, chroma_client
from tests.conftest import PLAYBOOKS

SUBSET = ["network/link-crc-errors-replace-optic.md", "server/server-disk-failure-replace.md"]


class _Other:
    """Another model as far as the index can tell: its own identity, its own vectors."""

    identity = "test:other-model"

    def __init__(self, inner: SentenceTransformerEmbedder) -> None:
        self._inner = inner

    @property
    def dimension(self) -> int:
        return self._inner.dimension

    def embed(self, texts: Sequence[str]) -> FloatMatrix:
        vectors = self._inner.embed(texts)
        return vectors[:, ::-1].copy()  # a permutation: unit length, other directions


def test_a_switch_of_embedder_re_embeds_every_document_once(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    folder = tmp_path / "playbooks"
    for rel in SUBSET:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PLAYBOOKS / rel, folder / rel)
    store = ChunkStore(chroma_client(tmp_path / "chroma"), embedder)
    first = ingest_folder(folder, store, embedder)
    assert len(first.added) == 2
    assert {c.metadata[EMBEDDER_KEY] for c in store.all()} == {embedder_identity(embedder)}
    assert ingest_folder(folder, store, embedder).chunks_written == 0

    other = _Other(embedder)
    switched = ingest_folder(folder, ChunkStore(chroma_client(tmp_path / "chroma"), other), other)
    assert sorted(switched.updated) == sorted(first.added)
    assert switched.chunks_written == first.chunks_written and switched.chunks_deleted == 0
    assert {c.metadata[EMBEDDER_KEY] for c in store.all()} == {"test:other-model"}
    assert ingest_folder(folder, store, other).chunks_written == 0

    before = fingerprint(HybridSearcher(store, embedder))
    assert fingerprint(HybridSearcher(store, other)) != before
