"""The bot installs the calibration fitted for its indexed playbooks, stored once."""

from __future__ import annotations

import shutil
from pathlib import Path

from bot.settings import Settings
from bot.wiring import refit_calibration
from retrieval.calibration import FittedCalibration
from retrieval.embeddings import SentenceTransformerEmbedder
from retrieval.ingest import ingest_folder
from retrieval.search import HybridSearcher
from retrieval.store import ChunkStore, chroma_client
from tests.conftest import PLAYBOOKS


def test_refit_calibration_stores_the_fit_and_reuses_it(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    folder = tmp_path / "pb"
    shutil.copytree(PLAYBOOKS / "server", folder)
    store = ChunkStore(chroma_client(tmp_path / "chroma"), embedder)
    ingest_folder(folder, store, embedder)
    settings = Settings(data_dir=tmp_path / "var")
    searcher = HybridSearcher(store, embedder)
    refit_calibration(searcher, settings)
    assert isinstance(searcher.calibration, FittedCalibration)
    stored = settings.calibration_file.read_text()
    other = HybridSearcher(store, embedder)  # a restart: the stored fit is loaded
    refit_calibration(other, settings)
    assert other.calibration == searcher.calibration
    assert settings.calibration_file.read_text() == stored
