"""Slack ack latency and incident → recommendation latency against the floor.

The floor of one recommendation is one query embedding plus one Chroma query; the bot's
path adds BM25, scoring, the bandit, the SPE, persistence and the Web API call.
Each figure is the median of ``repeats`` interleaved repetitions with a 95 % bootstrap
interval over them (``bench.stats``). "Posted" ends when the fake Web API receives
``chat.postMessage`` (the operator sees it); "handler" ends when the bot has also stored the
message's ts, which nobody waits for.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from slack_bolt import BoltRequest

from bench.stats import median_ci
from bot.db.engine import make_engine
from bot.db.migrate import upgrade
from bot.service import IncidentInput, NPOService
from bot.settings import PROJECT_ROOT, Settings
from bot.slack import flows
from bot.slack.app import app_for, slack_context, web_client
from bot.wiring import policy_engine
from core.npo import NPOConfig
from retrieval.chunking import Document, chunk_document
from retrieval.corpus import playbook_document, runbook_documents
from retrieval.embeddings import EmbeddingBackend, make_embedder
from retrieval.playbook import lint_folder
from retrieval.search import HybridSearcher
from retrieval.store import ChunkStore, chroma_client
from testkit.slack_api import event_body, fake_slack, signed_headers

SECRET = "bench-secret"
QUERIES = [
    "CRC errors climbing on leaf-12 eth1/3",
    "BGP session to spine-2 went Idle",
    "db-7 SMART predictive failure on /dev/sdb",
    "certificate for api.internal expires in 3 days",
    "/var is 97% full on web-3",
    "packet loss between rack 12 and rack 40",
    "DNS SERVFAIL from resolver 10.0.0.53",
    "ECMP imbalance on spine-1 uplinks",
]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def _documents(n: int) -> list[Document]:
    """The bundled playbooks, the public runbooks and labelled variants up to ``n``."""
    docs = [playbook_document(pb) for pb in lint_folder(PROJECT_ROOT / "playbooks").playbooks]
    corpus = PROJECT_ROOT.parent / "shared" / "corpora" / "runbooks-v1" / "runbooks"
    if corpus.is_dir():
        docs += runbook_documents(corpus)
    base = list(docs)
    i = 0
    while len(docs) < n:
        d = base[i % len(base)]
        docs.append(
            Document(
                f"{d.doc_id}~{i}",
                f"{d.title} (site {i})",
                d.text,
                f"{d.content_hash[:50]}{i:014d}",
                dict(d.metadata, status="vetted"),
            )
        )
        i += 1
    return [
        Document(
            d.doc_id,
            d.title,
            d.text,
            d.content_hash,
            {
                **d.metadata,
                "status": "vetted",
                "action": d.metadata.get("action", "collect_diagnostics"),
            },
        )
        for d in docs[:n]
    ]


def run(
    playbooks: int,
    incidents: int,
    burst: int,
    repeats: int = 5,
    backend: EmbeddingBackend = EmbeddingBackend.TORCH,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    embedder = make_embedder(backend, cache_dir=cache_dir)
    with tempfile.TemporaryDirectory(prefix="npo-bench-") as tmp:
        store = ChunkStore(chroma_client(Path(tmp) / "chroma"), embedder)
        chunks = [c for d in _documents(playbooks) for c in chunk_document(d)]
        started = time.perf_counter()
        for s in range(0, len(chunks), 256):
            part = chunks[s : s + 256]
            store.add(part, embedder.embed([c.text for c in part]))
        index_s = time.perf_counter() - started
        searcher = HybridSearcher(store, embedder)

        url = f"sqlite:///{tmp}/npo.db"
        upgrade(url)
        engine = make_engine(url)
        spe = policy_engine(PROJECT_ROOT / "playbooks" / "policies")
        service = NPOService(engine, searcher, spe, NPOConfig(), np.random.default_rng(0))
        with fake_slack() as api:
            settings = Settings.model_validate(
                {
                    "slack_bot_token": "xoxb",
                    "slack_signing_secret": SECRET,
                    "slack_api_url": api.url,
                }
            )
            client = web_client(settings)
            ctx = slack_context(settings, service, lambda pb: [], lambda pb: None, client)
            floor: list[list[float]] = [[] for _ in range(repeats)]
            posted_ms: list[list[float]] = [[] for _ in range(repeats)]
            handler_ms: list[list[float]] = [[] for _ in range(repeats)]
            # Interleaved repetitions: the floor of incident i and incident i on the same
            # machine moment, the one that runs first alternating (the second sees caches
            # the first warmed), every text new to both (the rep is in it).
            for rep in range(repeats):
                for i in range(incidents):
                    text = QUERIES[i % len(QUERIES)] + f" #{rep}-{i}"
                    incident = IncidentInput(
                        text,
                        "slack",
                        channel="C1",
                        thread_ts=f"{rep}{i:05d}.0",
                        reporter="U1",
                        source_event_id=f"EvR{rep}-{i}",  # as a Slack event: checked, claimed
                    )

                    def floor_once(text: str = text, rep: int = rep) -> None:
                        t = time.perf_counter()
                        store.query(embedder.embed([text])[0], 5)
                        floor[rep].append((time.perf_counter() - t) * 1000)

                    def bot_once(incident: IncidentInput = incident, rep: int = rep) -> None:
                        t = time.perf_counter()
                        flows.post_recommendation(ctx, client, incident)
                        handler_ms[rep].append((time.perf_counter() - t) * 1000)
                        posted_ms[rep].append((api.last_received("chat.postMessage") - t) * 1000)

                    first, second = (
                        (floor_once, bot_once) if (rep + i) % 2 else (bot_once, floor_once)
                    )
                    first()
                    second()
            posted = len(api.of("chat.postMessage"))

            app = app_for(settings, ctx, client)
            # One burst per repetition, each once the previous one's work is done, so
            # every burst meets an idle bot and its p50/p99 is one repetition's figure.
            acks: list[list[float]] = [[] for _ in range(repeats)]
            for rep in range(repeats):
                for i in range(burst):
                    mention = {
                        "type": "app_mention",
                        "user": "U1",
                        "text": "<@UBOT> " + QUERIES[i % len(QUERIES)] + f" #{rep}",
                        "ts": f"{1000 + rep * burst + i}.0",
                        "channel": "C1",
                    }
                    body = event_body(mention, f"EvB{rep}-{i}")
                    req = BoltRequest(
                        body=body, headers=signed_headers(SECRET, body, "application/json")
                    )
                    t = time.perf_counter()
                    resp = app.dispatch(req)
                    acks[rep].append((time.perf_counter() - t) * 1000)
                    assert resp.status == 200
                api.wait_for("chat.postMessage", posted + (rep + 1) * burst, timeout=600)
    out: dict[str, Any] = {
        "playbooks": playbooks,
        "chunks": len(chunks),
        "index_s": index_s,
        "embedding_backend": str(backend),
        "pipeline_repeats": repeats,
        "recommendations_posted": posted,
    }
    for q in (50, 99):
        out.update(median_ci(f"ack_p{q}_ms", [pct(r, q) for r in acks]))
    per_rep = {
        "recommend": posted_ms,
        "floor": floor,
        "recommend_handler": handler_ms,
    }
    for name, reps in per_rep.items():
        for q in (50, 99):
            out.update(median_ci(f"{name}_p{q}_ms", [pct(r, q) for r in reps]))
    for q in (50, 99):
        out.update(
            median_ci(
                f"ratio_p{q}",
                [pct(b, q) / pct(f, q) for b, f in zip(posted_ms, floor, strict=True)],
            )
        )
        out.update(
            median_ci(
                f"handler_ratio_p{q}",
                [pct(b, q) / pct(f, q) for b, f in zip(handler_ms, floor, strict=True)],
            )
        )
    return out
