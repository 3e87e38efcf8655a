"""The composition root: every entry point (``npo`` sub-commands, the evaluations) gets its
long-lived components from here, built once from Settings. Only this module constructs the
concrete adapters (the embedder, the vector store and searcher, the Rego policy engine, the
context providers, the LLM, the Slack app and the scheduler); everything else is handed them.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy.engine import Engine

from bot.context.config import build_gatherer, load_config
from bot.db.engine import default_url, make_engine
from bot.db.migrate import upgrade
from bot.db.state import migrate_arms
from bot.extraction.llm import LLMAugmenter
from bot.extraction.rules import Vocabulary
from bot.governance.policies import read_policy_modules
from bot.monitoring.ticker import MonitorTicker
from bot.native import load_torch_first, one_blas_thread
from bot.service import NPOService
from bot.service.deferrals import deferral_policy
from bot.settings import Settings

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler
    from slack_bolt import App

    from bot.reporting.metrics import Metrics
    from bot.slack.app import ListenerPool
    from bot.slack.serve import Check, HttpConfig, PostHandler
    from core.rego import RegoPolicyEngine
    from retrieval.calibration import FittedCalibration
    from retrieval.embeddings import Embedder
    from retrieval.search import FixedCurve, HybridSearcher
    from retrieval.store import ChunkStore

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


def refit_calibration(
    searcher: HybridSearcher, settings: Settings
) -> FittedCalibration | FixedCurve:
    """Install the similarity calibration fitted for the indexed playbooks: the stored one
    when the playbooks are unchanged, a new fit (seconds, self-queries) when they changed."""
    from retrieval.calibration import load_or_fit

    return load_or_fit(searcher, settings.calibration_file)


def embedder(settings: Settings) -> Embedder:
    """The configured embedding model (offline; torch is loaded before regopy, numpy's
    BLAS keeps off the cores the model needs)."""
    load_torch_first()
    one_blas_thread()
    from retrieval.embeddings import make_embedder

    return make_embedder(
        settings.embedding_backend, settings.embedding_model, settings.embedding_cache_folder
    )


def chunk_store(settings: Settings, model: Embedder) -> ChunkStore:
    """The vector store (embedded Chroma, or a Chroma server) with our embedding function."""
    from retrieval.store import ChunkStore, chroma_client

    return ChunkStore(chroma_client(settings.chroma_folder, settings.chroma_url), model)


def searcher(settings: Settings, store: ChunkStore, model: Embedder) -> HybridSearcher:
    """Hybrid search over the store, without its calibration (``refit_calibration``)."""
    from retrieval.search import HybridSearcher

    return HybridSearcher(store, model)


def policy_engine(directory: Path) -> RegoPolicyEngine:
    """The SPE from the Rego policies under ``directory`` (torch is loaded before regopy)."""
    load_torch_first()
    from core.rego import RegoPolicyEngine

    return RegoPolicyEngine(read_policy_modules(directory))


def ticker(
    settings: Settings,
    engine: Engine,
    clock: Callable[[], dt.datetime],
    notify: Callable[[str], None] | None = None,
) -> MonitorTicker:
    """The meta-monitor's tick on this database."""
    interval = dt.timedelta(minutes=settings.monitor_interval_minutes)
    return MonitorTicker(engine, settings.npo_config(), clock, interval, notify)


def build(settings: Settings, ingest: bool = True) -> Components:
    """Migrate the database, load the model, open the vector store (ingesting the bundled
    playbooks when they changed) and the SPE, and wire the service."""
    from retrieval.ingest import ingest_folders

    url = database_url(settings)
    upgrade(url)
    check_arms(settings, url)
    model = embedder(settings)
    store = chunk_store(settings, model)
    folders = [settings.playbooks_dir]
    if settings.submissions_folder.is_dir():
        folders.append(settings.submissions_folder)

    def reingest() -> None:
        folders[1:] = [settings.submissions_folder] if settings.submissions_folder.is_dir() else []
        report = ingest_folders(folders, store, model)
        if report.changed:
            print(
                f"playbooks: {len(report.added)} added, {len(report.updated)} updated, "
                f"{len(report.removed)} removed",
                file=sys.stderr,
            )
        search.refresh()
        refit_calibration(search, settings)

    search = searcher(settings, store, model)
    if ingest:
        reingest()
    else:
        refit_calibration(search, settings)
    spe = policy_engine(settings.policies_dir)
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
        search,
        spe,
        settings.npo_config(),
        rng,
        classify=llm.classify if llm else None,
        max_incident_chars=settings.max_incident_chars,
        vocabulary=vocabulary,
        context=context,
        deferral=deferral_policy(settings),
    )
    return Components(service, ticker(settings, service.engine, service.clock), reingest)


def scheduler(
    settings: Settings,
    components: Components,
    library_sync: Callable[[], object] | None = None,
    outbox: Callable[[], object] | None = None,
    deferrals: Callable[[], object] | None = None,
) -> BackgroundScheduler:
    """This process's scheduled jobs (not started): tick, expiry, stats, retention, and
    the optional library sync, outbox and deferral jobs."""
    from bot.monitoring.retention import RetentionPolicy
    from bot.monitoring.scheduler import build_scheduler

    return build_scheduler(
        components.ticker,
        components.service,
        components.service.clock,
        dt.timedelta(hours=settings.expire_after_hours),
        library_sync=library_sync,
        retention=RetentionPolicy.from_settings(settings),
        outbox=outbox,
        deferrals=deferrals,
    )


@dataclass
class SlackStack:
    """The Slack app and everything it needs running beside it (not started)."""

    app: App
    components: Components
    listeners: ListenerPool
    scheduler: BackgroundScheduler
    finish_pending: Callable[[], None]  # what a stopped process acknowledged, finished
    alerts: PostHandler  # POST /alertmanager
    alerts_open: bool  # the webhook takes requests (a token is set, or anonymous is allowed)


def slack_stack(settings: Settings) -> SlackStack:
    """The Slack app on the service, with governance, the library, the Alertmanager intake
    and the scheduled jobs of a serving process."""
    from bot.alerts.alertmanager import AlertIntake, parse_routes, wsgi_handler
    from bot.extraction.llm import LLMAugmenter, template_summary
    from bot.governance.library import Library
    from bot.governance.library_sync import LibrarySync
    from bot.governance.submissions import Governance
    from bot.service.deferrals import run_due
    from bot.slack.app import ListenerPool, app_for, slack_context, web_client
    from bot.slack.escape import escape
    from bot.slack.follow_ups import deferral_poster
    from bot.slack.outbox import deliver_pending

    components = build(settings)
    service = components.service
    library = Library.load(settings.playbooks_dir, settings.submissions_folder)
    summarise = template_summary
    if settings.llm:
        summarise = LLMAugmenter.from_name(settings.llm).summarise

    def on_approved() -> None:
        components.reingest()
        library.reload()

    sync = LibrarySync(service.engine, settings.submissions_folder, on_approved)
    sync.run()  # approvals made on other replicas while this one was down
    governance = Governance(
        service.engine,
        settings.submissions_folder,
        settings.reviewer_users,
        sync.run,
        service.clock,
    )
    client = web_client(settings)
    ctx = slack_context(
        settings, service, library.steps, library.text, client, summarise, governance
    )
    listeners = ListenerPool(settings.listener_threads)
    app = app_for(settings, ctx, client, listeners)

    def finish_pending() -> None:
        counts = deliver_pending(ctx, client)
        if any(counts.values()):
            log.warning("finished work a stopped process left: %s", counts)

    poster = deferral_poster(ctx, client)

    def deferrals() -> None:
        counts = run_due(service, service.deferral, poster)
        if any(counts.values()):
            log.info("deferrals judged again: %s", counts)

    jobs = scheduler(settings, components, sync.run, finish_pending, deferrals)
    if settings.ops_channel:
        channel = settings.ops_channel

        def notify(text: str) -> None:
            # The monitor's notices hold playbook ids and reasons; their own markup (emoji,
            # backticks) uses none of Slack's control characters, so the whole text is escaped.
            app.client.chat_postMessage(channel=channel, text=escape(text))

        components.ticker.notify = notify
    intake = AlertIntake(
        ctx,
        client,
        parse_routes(settings.alert_routes),
        settings.alert_channel or next(iter(settings.incident_channels), ""),
    )
    token = settings.alertmanager_token
    alerts = wsgi_handler(
        intake, token.get_secret_value() if token else None, settings.alertmanager_allow_anonymous
    )
    alerts_open = bool(token) or settings.alertmanager_allow_anonymous
    return SlackStack(app, components, listeners, jobs, finish_pending, alerts, alerts_open)


def metrics(components: Components) -> Metrics:
    """``GET /metrics`` of this process (counts read from the database at scrape time)."""
    from bot.reporting.metrics import Metrics

    return Metrics(components.service.engine)


def http_config(settings: Settings) -> HttpConfig:
    from bot.slack.serve import HttpConfig

    return HttpConfig(
        max_body_bytes=settings.max_body_bytes,
        read_timeout_seconds=settings.read_timeout_seconds,
        threads=settings.http_threads,
        connection_limit=settings.http_connection_limit,
        readiness_timeout_seconds=settings.readiness_timeout_seconds,
    )


def readiness(components: Components) -> dict[str, Check]:
    """What ``/readyz`` checks on this process's components."""
    from bot.slack.serve import readiness_checks
    from retrieval.search import HybridSearcher

    service = components.service
    retriever = service.retriever
    store = retriever.store if isinstance(retriever, HybridSearcher) else None
    return readiness_checks(service.engine, store.count if store is not None else None, service.spe)
