"""Adapting the embedding model to a corpus: the pair builder, the batches, one tiny run of
the command on a fixture corpus."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from retrieval.adapt import TrainingPair, batches, main, training_pairs
from retrieval.chunking import EXPANSION, Document, chunk_document
from retrieval.embeddings import SentenceTransformerEmbedder
from retrieval.evaluate import CachedEmbedder, runbook_family
from retrieval.lexicon import Lexicon, raw_words

FLAP = (
    "# NodeNetworkInterfaceFlapping\n\n## Meaning\n\nNetwork interface is often changing its "
    "status between up and down.\n\n## Impact\n\nApplications on the node lose connections "
    "and retry.\n\n## Diagnosis\n\nCheck the cable, the switch port and the NIC driver with "
    "ethtool and dmesg.\n\n## Mitigation\n\nReplace the cable or move the workload off the node.\n"
)
CRASH = (
    "# KubePodCrashLooping\n\n## Meaning\n\nPod is in CrashLoopBackOff state: its container "
    "keeps restarting.\n\n## Diagnosis\n\nCheck the logs with kubectl logs --previous.\n\n"
    "## Mitigation\n\nFix the application or its configuration.\n"
)


def _doc(doc_id: str, title: str, text: str) -> Document:
    return Document(doc_id, title, text, (doc_id * 64)[:64], {"status": "vetted"})


DOCS = [
    _doc(
        "node/NodeNetworkInterfaceFlapping.md",
        "NodeNetworkInterfaceFlapping — Node Network Interface Flapping",
        FLAP,
    ),
    _doc(
        "kubernetes/KubePodCrashLooping.md", "KubePodCrashLooping — Kube Pod Crash Looping", CRASH
    ),
    # the same runbook in another source: one family with the first copy
    _doc("openshift/KubePodCrashLooping.md", "KubePodCrashLooping — Kube Pod Crash Looping", CRASH),
]


def test_pairs_come_from_the_corpus_and_pair_a_query_with_a_chunk_of_its_own_document() -> None:
    lexicon = Lexicon.load()
    pairs = training_pairs(DOCS, lexicon, seed=0, family=runbook_family)
    assert pairs and {p.doc_id for p in pairs} == {d.doc_id for d in DOCS}
    for doc in DOCS:
        chunks = chunk_document(doc, lexicon=lexicon)
        own = {c.text for c in chunks if c.metadata.get("kind") != EXPANSION}
        expansion = {c.text for c in chunks if c.metadata.get("kind") == EXPANSION}
        mine = [p for p in pairs if p.doc_id == doc.doc_id]
        assert mine and all(p.passage in own for p in mine)  # never the derived text
        assert not any(p.passage in expansion for p in mine)
    queries = [p.query for p in pairs if p.doc_id == DOCS[0].doc_id]
    assert "Node Network Interface Flapping" in queries  # the alert name as words
    # lexicon rewrites: operators' words the runbook never uses ("bouncing" for "flapping")
    written = set(raw_words(f"{DOCS[0].title} {DOCS[0].text}"))
    assert any(set(raw_words(q)) - written for q in queries)
    assert len({p.family for p in pairs if "KubePodCrashLooping" in p.doc_id}) == 1


def test_a_symptom_line_is_paired_with_another_chunk_of_its_document_when_there_is_one() -> None:
    pairs = training_pairs(DOCS[:1], Lexicon.load(), seed=0)
    symptom = [p for p in pairs if p.query.startswith("Network interface is often changing")]
    assert symptom
    chunks = [c for c in chunk_document(DOCS[0]) if c.text]
    if len(chunks) > 1:
        assert all(symptom[0].query.lower() not in p.passage.lower() for p in symptom)


def test_pairs_are_reproducible_from_the_seed() -> None:
    lexicon = Lexicon.load()
    assert training_pairs(DOCS, lexicon, seed=3) == training_pairs(DOCS, lexicon, seed=3)


def test_no_batch_holds_two_pairs_of_one_family() -> None:
    pairs = [TrainingPair(f"q{i}", f"p{i}", f"d{i % 7}", f"f{i % 5}") for i in range(60)]
    out = batches(pairs, 4, random.Random(0))
    assert all(2 <= len(b) <= 4 for b in out)
    assert all(len({p.family for p in b}) == len(b) for b in out)
    covered = [p for b in out for p in b]
    assert len(covered) == len(set(covered)) and len(covered) >= 56  # only a tail dropped
    assert batches([pairs[0], pairs[5]], 4, random.Random(0)) == []  # one family: no negative


def test_the_command_trains_and_saves_a_model_the_embedder_loads(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    corpus = tmp_path / "runbooks"
    for doc in DOCS:
        path = corpus / doc.doc_id
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(doc.text, encoding="utf-8")
    out = tmp_path / "model"
    args = ["--corpus", str(corpus), "--out", str(out), "--batch-size", "8"]
    assert main([*args, "--max-pairs", "0", "--max-seq-length", "32", "--lr", "1e-4"]) == 0
    record = json.loads((out / "adaptation.json").read_text())
    assert record["documents"] == 3 and record["pairs"] == record["pairs_built"] > 8
    assert record["steps"] >= 2 and record["train_s"] >= 0
    assert record["config"]["max_seq_length"] == 32
    adapted = SentenceTransformerEmbedder(str(out))
    text = ["network interface going up and down"]
    a, b = adapted.embed(text), embedder.embed(text)
    assert a.shape == b.shape and abs(float(np.linalg.norm(a)) - 1.0) < 1e-4
    assert not np.allclose(a, b, atol=1e-6)  # the weights moved
    assert adapted._model.max_seq_length == embedder._model.max_seq_length  # inference length kept


def test_bad_arguments_are_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path)])
    assert main(["--corpus", str(tmp_path), "--out", str(tmp_path / "m"), "--epochs", "0"]) == 2
    assert main(["--corpus", str(tmp_path), "--out", str(tmp_path / "m")]) == 2  # no documents
    assert not (tmp_path / "m").exists()


class _Fixed:
    """A fake embedder: every text maps to one constant vector."""

    def __init__(self, name: str, value: float) -> None:
        self.identity, self.value = name, value  # what the cache is keyed by

    @property
    def dimension(self) -> int:
        return 2

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.full((len(texts), 2), self.value, dtype=np.float32)


def test_the_evaluation_cache_keeps_each_models_vectors_apart(tmp_path: Path) -> None:
    base = CachedEmbedder(_Fixed("base", 0.1), tmp_path)
    base.embed(["disk full"])
    base.save()
    adapted = CachedEmbedder(_Fixed("adapted", 0.9), tmp_path)  # same dimension, same folder
    assert float(adapted.embed(["disk full"])[0, 0]) == pytest.approx(0.9)
    assert float(CachedEmbedder(_Fixed("base", 0.5), tmp_path).embed(["disk full"])[0, 0]) == (
        pytest.approx(0.1)
    )
