"""Prometheus metrics for ``GET /metrics`` (HTTP mode).

Counts come from the database at scrape time, so every replica reports the same totals;
request latency is measured per process. Each app gets its own registry (nothing global).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.db.models import Feedback, ModelVersion, MonitorDecisionRow, Recommendation


class AlignmentCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        with Session(self._engine) as s:
            outcomes = s.exec(
                select(Recommendation.outcome, func.count()).group_by(Recommendation.outcome)
            ).all()
            verdicts = s.exec(
                select(Recommendation.spe_verdict, func.count()).group_by(
                    Recommendation.spe_verdict
                )
            ).all()
            live = col(Feedback.withdrawn).is_(False)
            kinds = s.exec(
                select(Feedback.kind, func.count()).where(live).group_by(Feedback.kind)
            ).all()
            per_pb = s.exec(
                select(Feedback.playbook_id, Feedback.kind, func.count(), func.avg(Feedback.loss))
                .where(live, Feedback.playbook_id != "")
                .group_by(Feedback.playbook_id, Feedback.kind)
            ).all()
            retrains = s.exec(
                select(ModelVersion.accepted, func.count()).group_by(col(ModelVersion.accepted))
            ).all()
            ticks = s.exec(
                select(MonitorDecisionRow.action, func.count()).group_by(MonitorDecisionRow.action)
            ).all()
        yield _counter("npo_decisions", "Decisions by outcome", "outcome", outcomes)
        yield _counter("npo_spe_verdicts", "SPE verdicts of decisions", "verdict", verdicts)
        yield _counter("npo_feedback", "Current feedback by kind", "kind", kinds)
        totals: dict[str, dict[str, tuple[int, float]]] = {}
        for pb, kind, n, mean in per_pb:
            totals.setdefault(pb, {})[kind] = (int(n), float(mean or 0.0))
        loss = GaugeMetricFamily("npo_alignment_loss", "Mean alignment loss", labels=["playbook"])
        rate = GaugeMetricFamily(
            "npo_override_rate", "Overrides / judged decisions", labels=["playbook"]
        )
        for pb, by_kind in sorted(totals.items()):
            n = sum(c for c, _ in by_kind.values())
            loss.add_metric([pb], sum(c * m for c, m in by_kind.values()) / n)
            judged = sum(by_kind.get(k, (0, 0.0))[0] for k in ("like", "override", "neutral"))
            rate.add_metric([pb], by_kind.get("override", (0, 0.0))[0] / judged if judged else 0.0)
        yield loss
        yield rate
        results = [("accepted" if accepted else "rejected", n) for accepted, n in retrains]
        yield _counter("npo_retrains", "Retrains by result", "result", results)
        yield _counter("npo_monitor_ticks", "Meta-monitor ticks by action", "action", ticks)


def _counter(
    name: str, documentation: str, label: str, rows: Iterable[tuple[Any, int]]
) -> CounterMetricFamily:
    """One counter family with one sample per (label value, count) row."""
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value, n in rows:
        family.add_metric([str(value)], n)
    return family


class Metrics:
    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(AlignmentCollector(engine))
        self.latency = Histogram(
            "npo_http_request_seconds",
            "HTTP request latency",
            ["path"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
