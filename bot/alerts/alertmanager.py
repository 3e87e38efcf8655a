"""Prometheus Alertmanager intake (webhook format version 4).

Each firing alert becomes an incident in the channel its labels map to; an Alertmanager
group (``groupKey``) is one Slack thread; a repeated notification of the same alert does not
recommend again (its fingerprint and start time are stored once); resolved alerts are
reported in the thread.

The endpoint is closed unless a bearer token is configured (or anonymous intake is asked
for explicitly). Each alert is handled on its own: a malformed one is named in the answer
and its siblings are still posted; a transient failure (database, Slack Web API after the
client's retries) answers 503, and Alertmanager's retry posts only what is still missing.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, select

from bot.db.engine import transaction
from bot.db.feedback_rows import claim_event, is_claimed
from bot.db.models import AlertGroup, Recommendation
from bot.extraction.severity import normalise_severity
from bot.service import IncidentInput
from bot.slack import flows
from bot.slack.escape import escape
from bot.slack.flows import SlackContext
from bot.text_input import MAX_STORED_CHARS, clean_text

log = logging.getLogger("npo.alerts")
# Failures a retry can cure: the database or the Slack Web API (after the client's own
# retries) did not answer. Alertmanager retries 5xx answers only.
TRANSIENT = (SQLAlchemyError, SlackClientError, OSError)

_LABELS_AS_HINTS = {
    "severity",
    "redundancy",
    "component",
    "fault_type",
    "device",
    "instance",
    "interface",
    "maintenance_window",
    "utilisation",
}


class AlertPayloadError(ValueError):
    """The webhook body is not Alertmanager's format; the message names the field."""


@dataclass(frozen=True, slots=True)
class Alert:
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    fingerprint: str
    index: int = 0  # position in the notification's ``alerts``

    @property
    def text(self) -> str:
        name = self.labels.get("alertname", "alert")
        summary = self.annotations.get("summary", "")
        description = self.annotations.get("description", "")
        labels = ", ".join(f"{k}={v}" for k, v in sorted(self.labels.items()) if k != "alertname")
        return "\n".join(
            p for p in (f"[{self.status.upper()}] {name}: {summary}", description, labels) if p
        )

    @property
    def name(self) -> str:
        return f"alerts[{self.index}] ({self.labels.get('alertname', 'alert')})"


@dataclass(frozen=True, slots=True)
class AlertFailure:
    """One alert that was not handled: which, why, and whether a retry can cure it."""

    index: int
    name: str
    error: str
    retry: bool

    def as_json(self) -> dict[str, object]:
        return {"alert": self.name, "index": self.index, "error": self.error, "retry": self.retry}


@dataclass(frozen=True, slots=True)
class Notification:
    group_key: str
    status: str
    alerts: list[Alert]
    common_labels: dict[str, str]
    rejected: list[AlertFailure] = field(default_factory=list)  # malformed alerts


@dataclass(slots=True)
class Outcome:
    """What one notification did; the HTTP answer follows from it."""

    counts: dict[str, int] = field(
        default_factory=lambda: {"recommended": 0, "repeated": 0, "resolved": 0}
    )
    failures: list[AlertFailure] = field(default_factory=list)

    @property
    def status(self) -> str:
        if any(f.retry for f in self.failures):
            return "503 Service Unavailable"  # Alertmanager retries; posted ones stay once
        return "400 Bad Request" if self.failures else "200 OK"

    def as_json(self) -> dict[str, object]:
        if not self.failures:
            return dict(self.counts)
        errors = "; ".join(
            f.error if f.error.startswith(f"alerts[{f.index}]") else f"{f.name}: {f.error}"
            for f in self.failures
        )
        return {**self.counts, "error": errors, "failed": [f.as_json() for f in self.failures]}


def _str_map(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise AlertPayloadError(f"{where} must be an object")
    # Label and annotation values become incident text and hints: no NUL (PostgreSQL
    # rejects it) or other controls, and no more than one Slack message each.
    return {
        clean_text(str(k), MAX_STORED_CHARS): clean_text(str(v), MAX_STORED_CHARS)
        for k, v in value.items()
    }


def _parse_alert(i: int, a: object) -> Alert:
    if not isinstance(a, Mapping):
        raise AlertPayloadError(f"alerts[{i}] must be an object")
    status = a.get("status")
    if status not in ("firing", "resolved"):
        raise AlertPayloadError(f"alerts[{i}].status: {status!r} is not firing or resolved")
    labels = _str_map(a.get("labels", {}), f"alerts[{i}].labels")
    fingerprint = str(
        a.get("fingerprint") or "|".join(f"{k}={v}" for k, v in sorted(labels.items()))
    )
    annotations = _str_map(a.get("annotations", {}), f"alerts[{i}].annotations")
    return Alert(str(status), labels, annotations, str(a.get("startsAt", "")), fingerprint, i)


def parse_notification(body: object) -> Notification:
    """The envelope must be Alertmanager's (AlertPayloadError otherwise); a malformed alert
    inside it is kept in ``rejected`` with the field at fault, and its siblings parse."""
    if not isinstance(body, Mapping):
        raise AlertPayloadError("body must be a JSON object")
    if str(body.get("version", "4")) != "4":
        raise AlertPayloadError(f"version: {body.get('version')!r} is not supported (expected 4)")
    group_key = body.get("groupKey")
    if not isinstance(group_key, str) or not group_key:
        raise AlertPayloadError("groupKey: missing")
    raw_alerts = body.get("alerts")
    if not isinstance(raw_alerts, list):
        raise AlertPayloadError("alerts: must be a list")
    alerts, rejected = [], []
    for i, a in enumerate(raw_alerts):
        try:
            alerts.append(_parse_alert(i, a))
        except AlertPayloadError as exc:
            labels = a.get("labels") if isinstance(a, Mapping) else None
            name = labels.get("alertname") if isinstance(labels, Mapping) else None
            label = f"alerts[{i}] ({name})" if isinstance(name, str) else f"alerts[{i}]"
            rejected.append(AlertFailure(i, label, str(exc), retry=False))
    return Notification(
        group_key,
        str(body.get("status", "firing")),
        alerts,
        _str_map(body.get("commonLabels", {}), "commonLabels"),
        rejected,
    )


def alert_hints(labels: Mapping[str, str]) -> dict[str, object]:
    """The labels that become scenario features; any severity word is accepted."""
    hints: dict[str, object] = {}
    for key in _LABELS_AS_HINTS & labels.keys():
        value = labels[key]
        if key == "redundancy":
            if value.isdigit():
                hints[key] = int(value)
        elif key == "instance":
            hints.setdefault("device", value.split(":")[0])
        elif key == "severity":
            hints[key] = normalise_severity(value)
        elif value.strip():
            hints[key] = value
    return hints


def channel_for(
    labels: Mapping[str, str], routes: Sequence[tuple[str, str, str]], default: str
) -> str:
    """The first route whose ``label=value`` matches, else the default channel."""
    for key, value, channel in routes:
        if labels.get(key) == value:
            return channel
    return default


def parse_routes(spec: str) -> list[tuple[str, str, str]]:
    """``team=net:CNET,severity=critical:CCRIT`` → [(team, net, CNET), (severity, …)]."""
    routes = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        match, _, channel = part.rpartition(":")
        key, _, value = match.partition("=")
        if not key or not value or not channel:
            raise ValueError(f"NPO_ALERT_ROUTES: {part!r} is not label=value:CHANNEL")
        routes.append((key, value, channel))
    return routes


class AlertIntake:
    def __init__(
        self,
        ctx: SlackContext,
        client: WebClient,
        routes: Sequence[tuple[str, str, str]],
        default_channel: str,
    ) -> None:
        self.ctx, self.client = ctx, client
        self.routes, self.default_channel = list(routes), default_channel
        # Two deliveries of one alert in this process take turns (Alertmanager's retry
        # racing a slow first attempt), so the second sees what the first posted.
        self._locks = [threading.Lock() for _ in range(32)]

    def handle(self, note: Notification) -> Outcome:
        """Each alert on its own: one that fails is named in the outcome, the others are
        still handled."""
        outcome = Outcome(failures=list(note.rejected))
        for failure in note.rejected:
            log.warning("alert %s of %s rejected: %s", failure.name, note.group_key, failure.error)
        if not note.alerts:
            return outcome
        try:
            thread = self._thread(note)
        except Exception as exc:
            for alert in note.alerts:
                outcome.failures.append(self._failed(note, alert, exc))
            return outcome
        for alert in note.alerts:
            try:
                with self._locks[zlib.crc32(alert.fingerprint.encode()) % len(self._locks)]:
                    kind = self._handle_alert(thread, alert)
            except Exception as exc:
                outcome.failures.append(self._failed(note, alert, exc))
            else:
                outcome.counts[kind] += 1
        if (
            not outcome.failures
            and note.status == "resolved"
            and all(a.status == "resolved" for a in note.alerts)
        ):
            try:
                with transaction(self.ctx.service.engine) as session:
                    row = session.get(AlertGroup, note.group_key)
                    if row is not None:
                        row.status, row.updated_at = "resolved", dt.datetime.now(dt.UTC)
                        session.add(row)
            except TRANSIENT as exc:  # the alerts were reported; only the mark is missing
                log.warning("could not mark group %s resolved: %s", note.group_key, exc)
        return outcome

    @staticmethod
    def _failed(note: Notification, alert: Alert, exc: Exception) -> AlertFailure:
        error = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, TRANSIENT):
            log.warning("alert %s of %s failed, retry: %s", alert.name, note.group_key, error)
            return AlertFailure(alert.index, alert.name, error, retry=True)
        if isinstance(exc, ValueError):  # the alert's content (a label the scenario refuses)
            log.warning("alert %s of %s rejected: %s", alert.name, note.group_key, error)
            return AlertFailure(alert.index, alert.name, error, retry=False)
        log.exception("alert %s of %s failed", alert.name, note.group_key)
        return AlertFailure(alert.index, alert.name, error, retry=True)

    def _handle_alert(self, thread: AlertGroup, alert: Alert) -> str:
        if alert.status == "resolved":
            event_id = f"alert-resolved:{alert.fingerprint}:{alert.starts_at}"
            with self.ctx.service.engine.connect() as conn:
                if is_claimed(conn, event_id):
                    return "repeated"
            self.client.chat_postMessage(
                channel=thread.channel,
                thread_ts=thread.thread_ts,
                text=":white_check_mark: Resolved: "
                + escape(alert.labels.get("alertname", "alert")),
            )
            with self.ctx.service.engine.begin() as conn:
                claim_event(conn, event_id, dt.datetime.now(dt.UTC))
            return "resolved"
        incident = IncidentInput(
            text=alert.text,
            source="alertmanager",
            channel=thread.channel,
            thread_ts=thread.thread_ts,
            reporter="alertmanager",
            hints=alert_hints(alert.labels),
            source_event_id=f"alert:{alert.fingerprint}:{alert.starts_at}",
        )
        if flows.post_recommendation(self.ctx, self.client, incident):
            return "recommended"
        unposted = self._unposted(incident)
        if unposted is None:
            return "repeated"
        self._post_stored(incident, unposted)
        return "recommended"

    def _unposted(self, incident: IncidentInput) -> str | None:
        """The stored recommendation of this alert whose message never reached Slack (the
        Web API failed after it was stored), claimed for this delivery if nobody holds it."""
        with Session(self.ctx.service.engine) as session:
            rec = session.exec(
                select(Recommendation).where(
                    Recommendation.source_event_id == incident.source_event_id
                )
            ).first()
            rec_id = rec.id if rec is not None and rec.post_state == "pending" else None
        if rec_id is None or not self.ctx.service.claim_post(rec_id):
            return None
        return rec_id

    def _post_stored(self, incident: IncidentInput, recommendation_id: str) -> None:
        """Post a recommendation stored by an earlier delivery that failed to post it."""
        decision = self.ctx.service.decision(recommendation_id)
        if decision is None:
            return
        ids = {"event_id": incident.source_event_id, "channel": incident.channel}
        flows.post_decision(
            self.ctx,
            self.client,
            recommendation_id,
            decision,
            incident.channel,
            incident.thread_ts,
            incident.reporter,
            ids,
            time.perf_counter(),
        )

    def _thread(self, note: Notification) -> AlertGroup:
        with Session(self.ctx.service.engine) as session:
            existing = session.get(AlertGroup, note.group_key)
        if existing is not None:
            return existing
        labels = note.common_labels or (note.alerts[0].labels if note.alerts else {})
        channel = channel_for(labels, self.routes, self.default_channel)
        name = labels.get("alertname", "alerts")
        root = self.client.chat_postMessage(
            channel=channel,
            text=f":rotating_light: {escape(name)} ({len(note.alerts)} alert(s)) — incident thread",
        )
        group = AlertGroup(group_key=note.group_key, channel=channel, thread_ts=str(root["ts"]))
        with transaction(self.ctx.service.engine) as session:
            if session.get(AlertGroup, note.group_key) is None:
                session.add(group)
        return group


def wsgi_handler(
    intake: AlertIntake, token: str | None, allow_anonymous: bool = False
) -> Callable[[dict[str, Any]], tuple[str, bytes]]:
    """``POST /alertmanager``: the bearer token (required unless ``allow_anonymous``; an
    empty token is no token), a JSON body, each alert handled; 200 with the counts, 400
    naming what was malformed, 503 when a retry can deliver what is missing."""
    configured = token or None

    def answer(status: str, body: object) -> tuple[str, bytes]:
        return status, json.dumps(body).encode()

    def handle(environ: dict[str, Any]) -> tuple[str, bytes]:
        sent = environ.get("HTTP_AUTHORIZATION", "").encode()
        if configured is None and not allow_anonymous:
            return answer(
                "401 Unauthorized",
                {
                    "error": "POST /alertmanager is closed: set NPO_ALERTMANAGER_TOKEN (and the "
                    "same bearer token in Alertmanager's http_config), or set "
                    "NPO_ALERTMANAGER_ALLOW_ANONYMOUS=true"
                },
            )
        if configured is not None and not hmac.compare_digest(  # constant time
            sent, f"Bearer {configured}".encode()
        ):
            return answer("401 Unauthorized", {"error": "bad or missing bearer token"})
        length = int(environ.get("CONTENT_LENGTH") or 0)
        try:
            body = json.loads(environ["wsgi.input"].read(length) or b"null")
        except RecursionError:
            return answer("400 Bad Request", {"error": "body is JSON nested too deeply"})
        except ValueError as exc:
            return answer("400 Bad Request", {"error": f"body is not JSON: {exc}"})
        try:
            note = parse_notification(body)
        except AlertPayloadError as exc:
            return answer("400 Bad Request", {"error": str(exc)})
        outcome = intake.handle(note)
        return answer(outcome.status, outcome.as_json())

    return handle
