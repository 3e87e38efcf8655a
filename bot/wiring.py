"""The composition root: builds every long-lived component once from Settings."""

from __future__ import annotations

import datetime as dt
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy.engine import Engine

from bot.context.config import build_gatherer, load_config
from bot.db.engine import default_url, make_engine
from bot.db.migrate import upgrade
from bot.db.state import migrate_arms
from bot.deferrals import deferral_policy
from bot.extract import Vocabulary
from bot.llm import LLMAugmenter
from bot.monitoring import MonitorTicker
from bot.native import load_torch_first
from bot.policies import load_policy_engine
from bot.service import NPOService
from bot.settings import Settings

if TYPE_CHECKING:
    from retrieval.search import HybridSearcher

log = logging.getLogger(__name__)


@dataclass
class Components:
    service: NPOService
    ticker: MonitorTicker
    reingest: Callable[[], None]


def database_url(settings: Settings) -> str:
    return settings.database_url or default_url(settings.data_dir)


def migrated_engine(settings: Settings) -> Engine:
    """The configured database, with the migrations applied."""
    url = database_url(settings)
    upgrade(url)
    return make_engine(url)


def check_arms(settings: Settings, url: str) -> None:
    """Refuse to start on arms that differ from the stored ones unless a migration is asked
    for (NPO_ARMS_MIGRATION): learned posteriors are never lost silently."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            done = migrate_arms(
                conn,
                settings.npo_config().bandit,
                settings.arms_migration,
                "startup",
                dt.datetime.now(dt.UTC),
            )
    finally:
        engine.dispose()
    if done:
        log.warning("threshold arms migrated: %s", done)


def refit_calibration(searcher: HybridSearcher, settings: Settings) -> None:
    """Install the similarity calibration fitted for the indexed playbooks: the stored one
    when the playbooks are unchanged, a new fit (seconds, self-queries) when they changed."""
    from retrieval.calibration import load_or_fit

    load_or_fit(searcher, settings.calibration_file)


def build(settings: Settings, ingest: bool = True) -> Components:
    """Migrate the database, load the model, open the vector store (ingesting the bundled
    playbooks when they changed) and the SPE, and wire the service."""
    load_torch_first()
    from retrieval.embeddings import make_embedder
    from retrieval.ingest import ingest_folders
    from retrieval.search import HybridSearcher
    from retrieval.store import ChunkStore, chroma_client

    url = database_url(settings)
    upgrade(url)
    check_arms(settings, url)
    embedder = make_embedder(
        settings.embedding_backend, settings.embedding_model, settings.embedding_cache_folder
    )
    store = ChunkStore(chroma_client(settings.chroma_folder, settings.chroma_url), embedder)
    folders = [settings.playbooks_dir]
    if settings.submissions_folder.is_dir():
        folders.append(settings.submissions_folder)

    def reingest() -> None:
        folders[1:] = [settings.submissions_folder] if settings.submissions_folder.is_dir() else []
        report = ingest_folders(folders, store, embedder)
        if report.changed:
            print(
                f"playbooks: {len(report.added)} added, {len(report.updated)} updated, "
                f"{len(report.removed)} removed",
                file=sys.stderr,
            )
        searcher.refresh()
        refit_calibration(searcher, settings)

    searcher = HybridSearcher(store, embedder)
    if ingest:
        reingest()
    else:
        refit_calibration(searcher, settings)
    spe = load_policy_engine(settings.policies_dir)
    rng = np.random.default_rng(settings.seed)
    vocabulary = Vocabulary.from_folders(folders)
    llm = (
        LLMAugmenter.from_name(settings.llm, vocabulary, settings.llm_timeout_seconds)
        if settings.llm
        else None
    )
    engine = make_engine(url)
    context = build_gatherer(load_config(settings.context_config), engine)
    service = NPOService(
        engine,
        searcher,
        spe,
        settings.npo_config(),
        rng,
        classify=llm.classify if llm else None,
        max_incident_chars=settings.max_incident_chars,
        vocabulary=vocabulary,
        context=context,
        deferral=deferral_policy(settings),
    )
    ticker = MonitorTicker(
        service.engine,
        settings.npo_config(),
        service.clock,
        dt.timedelta(minutes=settings.monitor_interval_minutes),
    )
    return Components(service, ticker, reingest)
