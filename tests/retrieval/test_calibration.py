"""The similarity calibration: fitted from self-queries of the indexed playbooks, stored
beside the index, refitted only when the playbooks change."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from retrieval.calibration import (
    FittedCalibration,
    fingerprint,
    fit_calibration,
    fit_logistic,
    load_or_fit,
    reliability,
    self_queries,
)
from retrieval.embeddings import SentenceTransformerEmbedder
from retrieval.ingest import ingest_folder
from retrieval.search import FixedCurve, HybridSearcher
from retrieval.store import ChunkStore, chroma_client
from tests.conftest import PLAYBOOKS


def test_logistic_fit_recovers_probabilities_it_was_drawn_from() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 2))
    p_true = 1.0 / (1.0 + np.exp(-(2.0 * x[:, 0] - 1.0)))
    y = (rng.random(4000) < p_true).astype(float)
    coef, b, mean, scale = fit_logistic(x, y, np.ones(4000), l2=0.1)
    p = 1.0 / (1.0 + np.exp(-(((x - mean) / scale) @ coef + b)))
    assert float(np.max(np.abs(p - p_true))) < 0.08
    assert abs(coef[1]) < 0.15  # the feature that carries nothing gets about nothing
    assert reliability(p, y)["ece"] < 0.04  # type: ignore[operator]
    overconfident = np.where(p > 0.5, 0.99, 0.01)
    assert reliability(overconfident, y)["brier"] > reliability(p, y)["brier"]  # type: ignore[operator]


@pytest.fixture(scope="module")
def indexed(
    tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder
) -> tuple[HybridSearcher, Path]:
    root = tmp_path_factory.mktemp("cal")
    folder = root / "playbooks"
    shutil.copytree(PLAYBOOKS, folder, ignore=shutil.ignore_patterns("policies"))
    store = ChunkStore(chroma_client(root / "chroma"), embedder)
    ingest_folder(folder, store, embedder)
    return HybridSearcher(store, embedder), folder


def test_self_queries_come_from_the_playbook_in_several_wordings(
    indexed: tuple[HybridSearcher, Path],
) -> None:
    searcher, _ = indexed
    chunks = searcher.documents["link-flap-drain"]
    queries = self_queries(chunks, random.Random(0))
    assert len(queries) >= 4
    assert len(set(queries)) == len(queries)
    title = str(chunks[0].metadata["playbook_title"])
    assert title in queries
    assert any("flap" in q and q != title for q in queries)  # applies_to spelled as words


def test_calibration_is_fitted_for_the_playbooks_and_reliable_out_of_fold(
    indexed: tuple[HybridSearcher, Path], tmp_path: Path
) -> None:
    searcher, _ = indexed
    fitted = load_or_fit(searcher, tmp_path / "calibration.json")
    assert isinstance(fitted, FittedCalibration)
    assert searcher.calibration is fitted
    held_out = fitted.report["held_out_top1"]
    assert isinstance(held_out, dict)
    assert held_out["brier"] < 0.15  # held-out documents, not the ones fitted on
    assert held_out["ece"] < 0.15
    hits = searcher.search("CRC errors climbing on leaf-12 Ethernet1/3, optics look dirty", 5)
    assert hits[0].doc_id == "link-crc-errors-replace-optic"
    assert all(0.0 <= h.similarity <= hits[0].similarity for h in hits)
    nothing = searcher.search("the grafana dashboards of the billing team show no data", 5)
    assert nothing[0].similarity < 0.5  # nothing fits: no confident candidate
    assert hits[0].similarity > 0.5 > hits[1].similarity

    # stored and reused as long as the playbooks are the same
    stored = (tmp_path / "calibration.json").read_text()
    again = load_or_fit(searcher, tmp_path / "calibration.json")
    assert again == FittedCalibration.from_json(stored)
    assert (tmp_path / "calibration.json").read_text() == stored


def test_a_changed_playbook_changes_the_fingerprint(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    folder = tmp_path / "pb"
    shutil.copytree(PLAYBOOKS / "server", folder)
    store = ChunkStore(chroma_client(tmp_path / "chroma"), embedder)
    ingest_folder(folder, store, embedder)
    searcher = HybridSearcher(store, embedder)
    before = fingerprint(searcher)
    path = folder / "disk-full-cleanup.md"
    path.write_text(path.read_text() + "\n- Also check docker images.\n")
    ingest_folder(folder, store, embedder)
    searcher.refresh()
    assert fingerprint(searcher) != before


def test_too_few_documents_keep_the_fixed_curve(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    folder = tmp_path / "pb"
    folder.mkdir()
    for name in ("disk-full-cleanup.md", "raid-degraded-rebuild.md"):
        shutil.copy(PLAYBOOKS / "server" / name, folder / name)
    store = ChunkStore(chroma_client(tmp_path / "chroma"), embedder)
    ingest_folder(folder, store, embedder)
    searcher = HybridSearcher(store, embedder)
    assert isinstance(fit_calibration(searcher), FixedCurve)
    assert isinstance(load_or_fit(searcher, tmp_path / "c.json"), FixedCurve)
    assert not (tmp_path / "c.json").exists()


def test_excluded_documents_are_never_candidates(indexed: tuple[HybridSearcher, Path]) -> None:
    searcher, _ = indexed
    query = "link flapping up and down repeatedly"
    assert searcher.search(query, 3)[0].doc_id == "link-flap-drain"
    without = searcher.search(query, 10, exclude={"link-flap-drain"})
    assert "link-flap-drain" not in [h.doc_id for h in without]
    assert len(without) == 10
