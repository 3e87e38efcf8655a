"""The searcher's in-memory index: the top-n selection against a full stable sort, and
searches that run while the searcher refreshes."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from retrieval.lexicon import Lexicon
from retrieval.search import HybridSearcher, _top_positive
from retrieval.store import StoredChunk


def test_top_positive_is_the_positive_head_of_a_stable_sort() -> None:
    rng = np.random.default_rng(7)
    for _ in range(200):
        size = int(rng.integers(1, 300))
        # few distinct values: many ties, zeros and negatives (the disallowed, -1)
        scores = rng.choice([-1.0, 0.0, 0.0, 0.5, 1.0, 1.5, 2.0], size=size)
        n = int(rng.integers(1, 100))
        order = np.argsort(-scores, kind="stable")
        expected = [int(i) for i in order if scores[i] > 0][:n]
        assert _top_positive(scores, n).tolist() == expected


class _TwoLibraries:
    """A store whose content alternates between two libraries at every read: what a
    searcher sees when playbooks are re-ingested while it serves."""

    def __init__(self) -> None:
        self.reads = 0
        self._libraries = [self._library("alpha", 30, 2), self._library("beta", 11, 3)]

    @staticmethod
    def _library(word: str, docs: int, chunks: int) -> tuple[list[StoredChunk], np.ndarray]:
        rng = np.random.default_rng(len(word))
        stored = [
            StoredChunk(
                f"{word}-{d}-{c}",
                f"{word} disk latency on node {d} part {c}",
                {"doc_id": f"{word}-{d}", "chunk": c, "title": f"{word} {d}", "status": "vetted"},
            )
            for d in range(docs)
            for c in range(chunks)
        ]
        return stored, rng.normal(size=(len(stored), 8)).astype(np.float32)

    def all_with_vectors(self) -> tuple[list[StoredChunk], np.ndarray]:
        self.reads += 1
        return self._libraries[self.reads % 2]


class _NoEmbedder:
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise AssertionError("the test passes the query's vector")


def test_a_search_during_a_refresh_reads_one_library_not_a_mix() -> None:
    store = _TwoLibraries()
    searcher = HybridSearcher(cast(Any, store), cast(Any, _NoEmbedder()), lexicon=Lexicon({}, 0))
    vector = np.ones(8, dtype=np.float32)
    stop = threading.Event()
    failures: list[str] = []

    def search() -> None:
        while not stop.is_set():
            try:
                for hit in searcher.search("alpha beta disk latency node", 5, vector=vector):
                    word = hit.doc_id.split("-")[0]
                    if not (hit.text.startswith(word) and hit.metadata["doc_id"] == hit.doc_id):
                        failures.append(f"{hit.doc_id} shown with {hit.text!r}")
            except Exception as exc:  # an index of one library used on the other
                failures.append(repr(exc))

    threads = [threading.Thread(target=search) for _ in range(2)]
    for t in threads:
        t.start()
    for _ in range(300):
        searcher.refresh()
    stop.set()
    for t in threads:
        t.join(10)
    assert store.reads > 300
    assert failures == []
