"""Document expansion (an extra chunk in operators' words) and the dense query text."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from retrieval.calibration import self_queries
from retrieval.chunking import EXPANSION, Document, chunk_document, expansion_text
from retrieval.embeddings import SentenceTransformerEmbedder
from retrieval.ingest import ingest_folder
from retrieval.lexicon import Lexicon
from retrieval.search import HybridSearcher, Method, dense_query
from retrieval.store import ChunkStore, StoredChunk, chroma_client
from tests.conftest import PLAYBOOKS

RUNBOOK = Document(
    "KubePodCrashLooping.md",
    "KubePodCrashLooping — Kube Pod Crash Looping",
    "# KubePodCrashLooping\n\n## Meaning\n\nPod is in CrashLoopBackOff state.\n\n"
    "## Diagnosis\n\nCheck the logs with kubectl logs.\n\n## Mitigation\n\nFix the app.\n",
    "a" * 64,
    {"status": "vetted"},
)


def test_the_expansion_chunk_spells_the_symptoms_in_other_words() -> None:
    lexicon = Lexicon.load()
    plain = chunk_document(RUNBOOK)
    expanded = chunk_document(RUNBOOK, lexicon=lexicon)
    assert len(expanded) == len(plain) + 1
    assert [c.chunk_id for c in expanded[:-1]] == [c.chunk_id for c in plain]
    last = expanded[-1]
    assert last.metadata["kind"] == EXPANSION and last.index == len(plain)
    assert last.text.startswith(RUNBOOK.title)
    assert "CrashLoopBackOff state" in last.text  # the meaning section, not the steps
    assert "kubectl logs" not in last.text
    assert "keeps dying" in last.text  # another spelling of the concept "crash"
    assert "keeps dying" in expansion_text(RUNBOOK, lexicon)
    assert all("kind" not in c.metadata for c in plain)


def test_without_symptom_sections_the_expansion_reads_the_start_of_the_text() -> None:
    doc = Document("svc.md", "Sidekiq", "Queue backlog grows.\n\n" + "filler " * 200, "b" * 64)
    text = expansion_text(doc, Lexicon.load())
    summary = text.split("\n")[0]
    assert summary.startswith("Queue backlog grows.")
    assert len(summary.split()) <= 90
    assert "piling up" in text


def test_dense_query_drops_label_lines_only() -> None:
    dump = "[FIRING:1] (warning)\nPod web-1 restarting\nLabels: severity=warning, pod=web-1"
    assert dense_query(dump) == "(warning) Pod web-1 restarting"
    assert dense_query("labels: a=b, c=d") == "labels: a=b, c=d"  # nothing else: kept
    assert dense_query("disk full, labels look wrong") == "disk full, labels look wrong"


def test_self_queries_ignore_the_expansion_chunk() -> None:
    stored = [
        StoredChunk(c.chunk_id, c.text, c.metadata)
        for c in chunk_document(RUNBOOK, lexicon=Lexicon.load())
    ]
    assert stored[-1].metadata["kind"] == EXPANSION
    with_expansion = self_queries(stored, random.Random(1))
    assert with_expansion == self_queries(stored[:-1], random.Random(1))
    assert not any("keeps dying" in q for q in with_expansion)


def _flap_playbook(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> tuple[Path, ChunkStore]:
    """A folder holding the link-flap playbook and an empty store beside it."""
    folder = tmp_path / "playbooks"
    (folder / "network").mkdir(parents=True)
    shutil.copy(PLAYBOOKS / "network/link-flap-drain.md", folder / "network")
    return folder, ChunkStore(chroma_client(tmp_path / "chroma"), embedder)


def test_ingest_adds_expansion_chunks_to_an_older_store_and_never_shows_them(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    folder, store = _flap_playbook(tmp_path, embedder)
    ingest_folder(folder, store, embedder, lexicon=Lexicon.empty())
    # An empty lexicon still writes an expansion chunk (title and summary): drop it to
    # stand for a store written before expansion chunks existed.
    older = [c.chunk_id for c in store.all() if c.metadata.get("kind") == EXPANSION]
    store.delete(older)
    count = store.count()
    report = ingest_folder(folder, store, embedder)
    assert report.updated == ["link-flap-drain"] and report.unchanged == 0
    assert store.count() == count + 1
    assert not ingest_folder(folder, store, embedder).changed  # idempotent again
    searcher = HybridSearcher(store, embedder)
    expansion = next(c for c in store.all() if c.metadata.get("kind") == EXPANSION)
    for method in Method:
        hits = searcher.search("interface keeps toggling", 3, method)
        assert hits and hits[0].doc_id == "link-flap-drain"
        assert hits[0].text != expansion.text


def test_a_lexicon_edit_rewrites_the_expansion_chunk(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    folder, store = _flap_playbook(tmp_path, embedder)
    ingest_folder(folder, store, embedder)
    edited = tmp_path / "lexicon.txt"
    edited.write_text("flap: flapping, flap, yo-yoing\n", encoding="utf-8")
    report = ingest_folder(folder, store, embedder, lexicon=Lexicon.load(edited))
    assert report.updated == ["link-flap-drain"]
    expansion = [c for c in store.all() if c.metadata.get("kind") == EXPANSION]
    assert len(expansion) == 1 and "yo yoing" in expansion[0].text
