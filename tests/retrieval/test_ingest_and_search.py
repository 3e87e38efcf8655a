"""Ingest and hybrid search with the real embedding model and an embedded Chroma."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest
from langchain_core.documents import Document

from retrieval.chunking import Document as SourceDocument
from retrieval.chunking import chunk_document, humanise
from retrieval.embeddings import FloatMatrix, SentenceTransformerEmbedder
from retrieval.ingest import IngestError, ingest_folder
from retrieval.langchain import PlaybookRetriever
from retrieval.search import Fusion, HybridSearcher, Method, dense_query, normalise_query
from retrieval.store import ChunkStore, chroma_client
from tests.conftest import PLAYBOOKS

SUBSET = [
    "network/link-crc-errors-replace-optic.md",
    "network/bgp-session-down-soft-reset.md",
    "server/server-disk-failure-replace.md",
    "services/certificate-expiry-renew.md",
]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    target = tmp_path / "playbooks"
    for rel in SUBSET:
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PLAYBOOKS / rel, target / rel)
    return target


def _store(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> ChunkStore:
    return ChunkStore(chroma_client(tmp_path / "chroma"), embedder)


def _snapshot(store: ChunkStore) -> list[tuple[str, str]]:
    return sorted((c.chunk_id, c.text) for c in store.all())


def test_embeddings_are_unit_length_and_batched(embedder: SentenceTransformerEmbedder) -> None:
    vectors = embedder.embed(["link flapping on leaf-3", "certificate expires tomorrow"])
    assert vectors.shape == (2, embedder.dimension) == (2, 384)
    assert abs(float((vectors[0] ** 2).sum()) - 1.0) < 1e-4
    assert embedder.embed([]).shape == (0, 384)


def test_ingest_is_incremental_and_idempotent(
    folder: Path, tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    store = _store(tmp_path, embedder)
    first = ingest_folder(folder, store, embedder)
    assert sorted(first.added) == [
        "bgp-session-down-soft-reset",
        "certificate-expiry-renew",
        "link-crc-errors-replace-optic",
        "server-disk-failure-replace",
    ]
    assert first.chunks_written == store.count() > 4
    before = _snapshot(store)

    again = ingest_folder(folder, store, embedder)
    assert (again.changed, again.chunks_written, again.chunks_deleted, again.unchanged) == (
        False,
        0,
        0,
        4,
    )
    assert _snapshot(store) == before

    cert = folder / "services/certificate-expiry-renew.md"
    cert.write_text(cert.read_text().replace("version: 1", "version: 2"))
    (folder / "server/server-disk-failure-replace.md").unlink()
    third = ingest_folder(folder, store, embedder)
    assert (third.updated, third.removed, third.unchanged) == (
        ["certificate-expiry-renew"],
        ["server-disk-failure-replace"],
        2,
    )
    doc_ids = {c.metadata["doc_id"] for c in store.all()}
    assert doc_ids == {
        "bgp-session-down-soft-reset",
        "certificate-expiry-renew",
        "link-crc-errors-replace-optic",
    }
    hashes = {
        c.metadata["content_hash"]
        for c in store.all()
        if c.metadata["doc_id"] == "certificate-expiry-renew"
    }
    assert len(hashes) == 1  # the old version's chunks are gone


def test_a_deprecated_playbook_is_removed(
    folder: Path, tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    store = _store(tmp_path, embedder)
    ingest_folder(folder, store, embedder)
    bgp = folder / "network/bgp-session-down-soft-reset.md"
    bgp.write_text(bgp.read_text().replace("status: vetted", "status: deprecated"))
    report = ingest_folder(folder, store, embedder)
    assert report.removed == ["bgp-session-down-soft-reset"]
    assert "bgp-session-down-soft-reset" not in {c.metadata["doc_id"] for c in store.all()}


def test_one_bad_file_changes_nothing(
    folder: Path, tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    store = _store(tmp_path, embedder)
    ingest_folder(folder, store, embedder)
    before = _snapshot(store)
    cert = folder / "services/certificate-expiry-renew.md"
    cert.write_text(cert.read_text().replace("version: 1", "version: 2"))  # a valid change...
    (folder / "network/broken.md").write_text("---\nid: broken\n---\n")  # ...and a bad file
    with pytest.raises(IngestError) as info:
        ingest_folder(folder, store, embedder)
    assert "broken.md: title: Field required" in str(info.value)
    assert _snapshot(store) == before


def test_a_crash_between_write_and_delete_is_repaired(
    folder: Path, tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    """Stale chunks left behind (as after a crash) are removed by the next ingest."""
    store = _store(tmp_path, embedder)
    ingest_folder(folder, store, embedder)
    stale = SourceDocument(
        "bgp-session-down-soft-reset", "old", "old text", "0" * 64, {"status": "vetted"}
    )
    chunks = chunk_document(stale)
    store.add(chunks, embedder.embed([c.text for c in chunks]))
    report = ingest_folder(folder, store, embedder)
    assert report.chunks_deleted == len(chunks)
    assert not any(c.metadata["content_hash"] == "0" * 64 for c in store.all())


@pytest.fixture(scope="module")
def library(
    tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder
) -> HybridSearcher:
    """The whole bundled library plus one draft, ingested once for the search tests."""
    folder = tmp_path_factory.mktemp("lib") / "playbooks"
    shutil.copytree(PLAYBOOKS, folder, ignore=shutil.ignore_patterns("policies"))
    draft = (folder / "network/link-flap-drain.md").read_text()
    draft = draft.replace("id: link-flap-drain", "id: link-flap-draft").replace(
        "status: vetted", "status: draft"
    )
    (folder / "network/link-flap-draft.md").write_text(draft)
    store = ChunkStore(chroma_client(folder.parent / "chroma"), embedder)
    ingest_folder(folder, store, embedder)
    return HybridSearcher(store, embedder)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            "CRC errors climbing on leaf-12 Ethernet1/3, optics look dirty",
            "link-crc-errors-replace-optic",
        ),
        (
            "[FIRING:1] BGP neighbor 10.0.0.1 went Idle on spine-2, prefixes missing",
            "bgp-session-down-soft-reset",
        ),
        ("tls cert for api.internal expires in 5 days", "certificate-expiry-renew"),
        ("db-7 SMART predictive failure on /dev/sdb", "server-disk-failure-replace"),
        ("/var is 97% full on web-3, no space left on device", "disk-full-cleanup"),
    ],
)
def test_operator_style_queries_find_the_right_playbook(
    library: HybridSearcher, query: str, expected: str
) -> None:
    hits = library.search(query, 3)
    assert hits[0].doc_id == expected
    assert 0.0 <= hits[-1].similarity <= hits[0].similarity <= 1.0
    assert len({h.doc_id for h in hits}) == len(hits)  # deduplicated to playbooks


def test_both_fusions_rank_the_obvious_playbook_first(library: HybridSearcher) -> None:
    query = "optic RX power low warning on spine-1 Ethernet4/1"
    for fusion in Fusion:
        searcher = HybridSearcher(library.store, library.embedder, fusion=fusion)
        assert searcher.search(query, 3)[0].doc_id == "optic-low-rx-power", fusion


def test_only_vetted_playbooks_are_candidates(library: HybridSearcher) -> None:
    query = "link flapping up and down repeatedly, drain it"
    for method in Method:
        ids = [h.doc_id for h in library.search(query, 10, method)]
        assert "link-flap-draft" not in ids
        assert "link-flap-drain" in ids
    drafts = library.search(query, 10, statuses=("draft",))
    assert [h.doc_id for h in drafts] == ["link-flap-draft"]


@pytest.mark.parametrize("exact_limit", [50_000, 0], ids=["in-memory", "chroma"])
def test_status_filter_in_memory_gives_chromas_filtered_answer(
    library: HybridSearcher, exact_limit: int
) -> None:
    """Both dense paths (the exact product over the vectors held in memory, and Chroma's
    query with the statuses checked in memory, falling back to Chroma's filter when a
    disallowed chunk is near) return what the filtered vector query returns, cosines
    included."""
    cases = [
        ("link flapping up and down repeatedly, drain it", ("vetted",)),  # draft is near
        ("link flapping up and down repeatedly, drain it", ("draft",)),
        ("BGP session down on spine-2", ("vetted",)),
        ("disk almost full on web-3", ("vetted", "draft")),
    ]
    for query, statuses in cases:
        vec = library.embedder.embed([query])[0]
        filtered = library.store.query(vec, library.depth, {"status": {"$in": list(statuses)}})
        expected = list(dict.fromkeys(str(h.metadata["doc_id"]) for h in filtered))[:5]
        searcher = HybridSearcher(library.store, library.embedder, exact_limit=exact_limit)
        got = searcher.search(query, 5, Method.DENSE, statuses=statuses)
        assert [h.doc_id for h in got] == expected, (query, statuses)
        best: dict[str, float] = {}
        for h in filtered:
            best.setdefault(str(h.metadata["doc_id"]), h.similarity)
        assert [h.cosine for h in got] == pytest.approx([best[d] for d in expected], abs=1e-4)


def test_every_method_ranks_and_carries_metadata(library: HybridSearcher) -> None:
    hybrid = library.search("BGP session down", 5, Method.HYBRID)
    dense = library.search("BGP session down", 5, Method.DENSE)
    lexical = library.search("BGP session down", 5, Method.BM25)
    assert all(h.dense_rank is not None for h in dense)
    assert all(h.lexical_rank is not None for h in lexical)
    assert hybrid[0].metadata["action"] == "bgp_soft_reset"
    assert hybrid[0].metadata["status"] == "vetted"
    assert library.search("   ", 5) == []


class _CountingEmbedder:
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self, inner: SentenceTransformerEmbedder) -> None:
        self.inner, self.texts = inner, 0
        self.dimension = inner.dimension

    def embed(self, texts: Sequence[str]) -> FloatMatrix:
        self.texts += len(texts)
        return self.inner.embed(texts)


def test_lexical_search_embeds_the_query_once_for_all_its_hits(library: HybridSearcher) -> None:
    """Each lexical hit's cosine is measured against one query vector, the same one a
    caller would pass."""
    assert isinstance(library.embedder, SentenceTransformerEmbedder)
    counting = _CountingEmbedder(library.embedder)
    real, library.embedder = library.embedder, counting
    try:
        hits = library.search("BGP session down", 5, Method.BM25)
    finally:
        library.embedder = real
    assert len(hits) >= 2 and counting.texts == 1
    vector = real.embed([dense_query("BGP session down")])[0]
    again = library.search("BGP session down", 5, Method.BM25, vector=vector)
    assert [h.cosine for h in hits] == pytest.approx([h.cosine for h in again], abs=1e-5)


def test_langchain_retriever_returns_documents(library: HybridSearcher) -> None:
    retriever = PlaybookRetriever(searcher=library, k=3)
    docs = retriever.invoke("certificate expired, clients fail the TLS handshake")
    assert all(isinstance(d, Document) for d in docs)
    assert docs[0].metadata["playbook_id"] == "certificate-expiry-renew"
    assert docs[0].metadata["rank"] == 1
    assert 0.0 <= docs[0].metadata["similarity"] <= 1.0
    assert "certificate" in docs[0].page_content.lower()


def test_chunks_keep_the_playbook_id_and_respect_the_size(
    embedder: SentenceTransformerEmbedder,
) -> None:
    text = "\n\n".join(f"## Part {i}\n" + ("word " * 150) for i in range(6))
    doc = SourceDocument("long-one", "A long playbook", text, "f" * 64, {"status": "vetted"})
    chunks = chunk_document(doc, max_chars=400)
    assert len(chunks) > 6
    assert all(c.doc_id == "long-one" and c.metadata["doc_id"] == "long-one" for c in chunks)
    assert all(len(c.text) <= 400 + len("A long playbook") + 1 for c in chunks)
    assert all(c.text.startswith("A long playbook") for c in chunks)


def test_helpers() -> None:
    assert humanise("KubePodCrashLooping") == "Kube Pod Crash Looping"
    assert humanise("KubeAPIDown") == "Kube API Down"
    assert normalise_query("[FIRING:2] disk full") == "disk full"
