"""Prometheus Alertmanager intake (webhook format version 4).

Each firing alert becomes an incident in the channel its labels map to; an Alertmanager
group (``groupKey``) is one Slack thread; a repeated notification of the same alert does not
recommend again (its fingerprint and start time are stored once); resolved alerts are
reported in the thread.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from sqlmodel import Session

from bot.db.engine import transaction
from bot.db.models import AlertGroup
from bot.service import IncidentInput
from bot.slack import flows
from bot.slack.escape import escape
from bot.slack.flows import SlackContext
from bot.text_input import MAX_STORED_CHARS, clean_text

_LABELS_AS_HINTS = {"severity", "redundancy", "component", "fault_type", "device", "instance"}


class AlertPayloadError(ValueError):
    """The webhook body is not Alertmanager's format; the message names the field."""


@dataclass(frozen=True, slots=True)
class Alert:
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    fingerprint: str

    @property
    def text(self) -> str:
        name = self.labels.get("alertname", "alert")
        summary = self.annotations.get("summary", "")
        description = self.annotations.get("description", "")
        labels = ", ".join(f"{k}={v}" for k, v in sorted(self.labels.items()) if k != "alertname")
        return "\n".join(
            p for p in (f"[{self.status.upper()}] {name}: {summary}", description, labels) if p
        )


@dataclass(frozen=True, slots=True)
class Notification:
    group_key: str
    status: str
    alerts: list[Alert]
    common_labels: dict[str, str]


def _str_map(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise AlertPayloadError(f"{where} must be an object")
    # Label and annotation values become incident text and hints: no NUL (PostgreSQL
    # rejects it) or other controls, and no more than one Slack message each.
    return {
        clean_text(str(k), MAX_STORED_CHARS): clean_text(str(v), MAX_STORED_CHARS)
        for k, v in value.items()
    }


def parse_notification(body: object) -> Notification:
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
    alerts = []
    for i, a in enumerate(raw_alerts):
        if not isinstance(a, Mapping):
            raise AlertPayloadError(f"alerts[{i}] must be an object")
        status = a.get("status")
        if status not in ("firing", "resolved"):
            raise AlertPayloadError(f"alerts[{i}].status: {status!r} is not firing or resolved")
        labels = _str_map(a.get("labels", {}), f"alerts[{i}].labels")
        fingerprint = str(
            a.get("fingerprint") or "|".join(f"{k}={v}" for k, v in sorted(labels.items()))
        )
        alerts.append(
            Alert(
                str(status),
                labels,
                _str_map(a.get("annotations", {}), f"alerts[{i}].annotations"),
                str(a.get("startsAt", "")),
                fingerprint,
            )
        )
    return Notification(
        group_key,
        str(body.get("status", "firing")),
        alerts,
        _str_map(body.get("commonLabels", {}), "commonLabels"),
    )


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

    def handle(self, note: Notification) -> dict[str, int]:
        counts = {"recommended": 0, "repeated": 0, "resolved": 0}
        thread = self._thread(note)
        for alert in note.alerts:
            if alert.status == "resolved":
                self.client.chat_postMessage(
                    channel=thread.channel,
                    thread_ts=thread.thread_ts,
                    text=":white_check_mark: Resolved: "
                    + escape(alert.labels.get("alertname", "alert")),
                )
                counts["resolved"] += 1
                continue
            hints: dict[str, object] = {}
            for key in _LABELS_AS_HINTS & alert.labels.keys():
                value = alert.labels[key]
                if key == "redundancy":
                    if value.isdigit():
                        hints[key] = int(value)
                elif key == "instance":
                    hints.setdefault("device", value.split(":")[0])
                else:
                    hints[key] = value
            incident = IncidentInput(
                text=alert.text,
                source="alertmanager",
                channel=thread.channel,
                thread_ts=thread.thread_ts,
                reporter="alertmanager",
                hints=hints,
                source_event_id=f"alert:{alert.fingerprint}:{alert.starts_at}",
            )
            posted = flows.post_recommendation(self.ctx, self.client, incident)
            counts["recommended" if posted else "repeated"] += 1
        if note.status == "resolved" and all(a.status == "resolved" for a in note.alerts):
            with transaction(self.ctx.service.engine) as session:
                row = session.get(AlertGroup, note.group_key)
                if row is not None:
                    row.status, row.updated_at = "resolved", dt.datetime.now(dt.UTC)
                    session.add(row)
        return counts

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


def handle_body(intake: AlertIntake, body: Any) -> dict[str, int]:
    return intake.handle(parse_notification(body))


def wsgi_handler(
    intake: AlertIntake, token: str | None
) -> Callable[[dict[str, Any]], tuple[str, bytes]]:
    """``POST /alertmanager``: bearer token (when configured), JSON, 200 with counts."""

    def handle(environ: dict[str, Any]) -> tuple[str, bytes]:
        sent = environ.get("HTTP_AUTHORIZATION", "").encode()
        if token and not hmac.compare_digest(sent, f"Bearer {token}".encode()):  # constant time
            return "401 Unauthorized", b'{"error": "bad or missing bearer token"}'
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = json.loads(environ["wsgi.input"].read(length) or b"null")
            counts = intake.handle(parse_notification(body))
        except (ValueError, AlertPayloadError) as exc:
            return "400 Bad Request", json.dumps({"error": str(exc)}).encode()
        return "200 OK", json.dumps(counts).encode()

    return handle
