"""The vector store: Chroma, embedded (``PersistentClient``) or a server (``HttpClient``).

Chroma is always handed our own embedding function, so it never tries to fetch its default
model. Chunk ids embed the document's content hash, which makes ingest incremental and
lets a crashed ingest be repaired by the next one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlparse

import numpy as np

from retrieval.chunking import Chunk
from retrieval.embeddings import Embedder

COLLECTION = "npo-playbooks"


def _chroma_embedding_function(embedder: Embedder) -> Any:
    from chromadb.api.types import Documents, EmbeddingFunction, Embeddings

    class _Ours(EmbeddingFunction[Documents]):
        def __init__(self) -> None:
            pass

        def __call__(self, input: Documents) -> Embeddings:
            return list(embedder.embed(list(input)))

        @staticmethod
        def name() -> str:
            return "npo-sentence-transformers"

        def get_config(self) -> dict[str, Any]:
            return {}

        @staticmethod
        def build_from_config(config: dict[str, Any]) -> Any:
            return _Ours()

    return _Ours()


def chroma_client(path: Path | None = None, url: str | None = None) -> Any:
    """A server client when ``url`` is given, otherwise an embedded client at ``path``."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    settings = ChromaSettings(anonymized_telemetry=False)
    if url:
        parsed = urlparse(url)
        if parsed.scheme not in {"http", "https"} or not parsed.hostname:
            raise ValueError(f"NPO_CHROMA_URL: {url!r} is not an http(s)://host:port URL")
        return chromadb.HttpClient(
            host=parsed.hostname,
            port=parsed.port or (443 if parsed.scheme == "https" else 8000),
            ssl=parsed.scheme == "https",
            settings=settings,
        )
    if path is None:
        raise ValueError(
            "a Chroma folder (NPO_CHROMA_PATH) or server URL (NPO_CHROMA_URL) is needed"
        )
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=settings)


@dataclass(frozen=True, slots=True)
class StoredChunk:
    chunk_id: str
    text: str
    metadata: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DenseHit:
    chunk_id: str
    similarity: float  # cosine
    metadata: dict[str, Any]


class ChunkStore:
    def __init__(self, client: Any, embedder: Embedder, name: str = COLLECTION) -> None:
        self._client = client
        self._embedder = embedder
        self._collection = client.get_or_create_collection(
            name,
            embedding_function=_chroma_embedding_function(embedder),
            metadata={"hnsw:space": "cosine"},
        )

    def add(
        self,
        chunks: Sequence[Chunk],
        vectors: np.ndarray,
        batch: int = 1000,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        """Upsert chunks with their vectors; ``extra`` is added to every chunk's metadata."""
        for start in range(0, len(chunks), batch):
            part = chunks[start : start + batch]
            self._collection.upsert(
                ids=[c.chunk_id for c in part],
                documents=[c.text for c in part],
                embeddings=list(vectors[start : start + batch]),
                metadatas=[cast(Any, {**c.metadata, **(extra or {})}) for c in part],
            )

    def delete(self, chunk_ids: Sequence[str], batch: int = 1000) -> None:
        for start in range(0, len(chunk_ids), batch):
            self._collection.delete(ids=list(chunk_ids[start : start + batch]))

    def all(self) -> list[StoredChunk]:
        got = self._collection.get(include=["documents", "metadatas"])
        return [
            StoredChunk(cid, doc or "", dict(meta or {}))
            for cid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
        ]

    def all_with_vectors(self) -> tuple[list[StoredChunk], np.ndarray | None]:
        got = self._collection.get(include=["documents", "metadatas", "embeddings"])
        chunks = [
            StoredChunk(cid, doc or "", dict(meta or {}))
            for cid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
        ]
        vectors = got.get("embeddings")
        if vectors is None or len(chunks) == 0:
            return chunks, None
        return chunks, np.asarray(vectors, dtype=np.float32)

    def count(self) -> int:
        return int(self._collection.count())

    def query(
        self,
        vector: np.ndarray,
        n: int,
        where: dict[str, Any] | None = None,
        metadata: bool = True,
    ) -> list[DenseHit]:
        """The ``n`` nearest chunks (fewer when the collection is smaller).

        ``metadata=False`` skips reading the chunks' metadata (callers that hold it in
        memory save most of the query's cost); a ``where`` filter costs far more than the
        nearest-neighbour search itself, so prefer filtering in memory.
        """
        if n < 1:
            return []
        include = ["metadatas", "distances"] if metadata else ["distances"]
        res = self._collection.query(
            query_embeddings=[vector], n_results=n, where=where, include=include
        )
        metas = res["metadatas"][0] if metadata else [None] * len(res["ids"][0])
        return [
            DenseHit(cid, 1.0 - float(dist), dict(meta or {}))
            for cid, dist, meta in zip(res["ids"][0], res["distances"][0], metas, strict=True)
        ]
