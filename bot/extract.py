"""Free incident text → scenario features, deterministically (the default without an LLM).

Explicit ``key=value`` labels win (``severity=critical``, ``redundancy=1``, ``device=leaf-3``,
as in Alertmanager label dumps); otherwise keywords decide.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping

from bot.severity import normalise_severity
from core.scenario import SEVERITIES, Scenario

_COMPONENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("certificate", ("certificate", "cert ", "tls", "ssl", "x509")),
    ("dns", ("dns", "resolver", "nxdomain", "servfail")),
    ("bgp", ("bgp", "peer", "prefix")),
    ("link", ("link", "crc", "optic", "transceiver", "interface", "eth", "flap", "lacp", "lag")),
    ("switch", ("switch", "spine", "leaf", "linecard", "line card", "chassis")),
    ("storage", ("ceph", "osd", "volume", "storage", "iops")),
    ("disk", ("disk", "smart", "filesystem", "raid", "no space", "/dev/sd", "nvme")),
    ("server", ("server", "host", "node", "memory", "ecc", "oom", "cpu", "kernel", "nic")),
    ("capacity", ("capacity", "headroom", "saturat")),
)
_FAULTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("crc_errors", ("crc", "fcs", "input errors")),
    ("flapping", ("flap", "up/down", "bouncing")),
    ("bgp_down", ("bgp session down", "bgp down", "neighbor down", "idle", "active state")),
    ("optic_degraded", ("rx power", "optic", "transceiver")),
    ("packet_loss", ("packet loss", "drops", "loss")),
    ("congestion", ("congest", "utilisation", "utilization", "saturat")),
    ("disk_failure", ("smart", "disk fail", "i/o error", "bad sector")),
    ("disk_full", ("disk full", "no space", "filesystem full", "% full")),
    ("memory_errors", ("ecc", "memory error", "dimm")),
    ("oom", ("oom", "out of memory")),
    ("cert_expiry", ("expir",)),
    ("dns_failure", ("servfail", "nxdomain", "resolve", "resolution")),
    ("down", ("down", "unreachable", "not responding")),
)
# Both patterns run on incident text of up to 40,000 characters, so they must match in
# linear time: every repetition is possessive (``*+``, ``++``: no backtracking into it) and
# is followed by a character it cannot match, so giving characters back could never help.
# A device is a letter, letters/digits, ``-``, a digit, letters/digits and an optional
# ``:port`` (``leaf-3:eth1/3``) that ends at its last word character.
_LABEL = re.compile(r"\b([a-z_]++)\s*+=\s*+([\w.:/-]++)", re.IGNORECASE)
_DEVICE = re.compile(
    r"\b([a-z][a-z0-9]*+-\d[a-z0-9]*+(?::[/.-]*+\w++(?:[/.-]++\w++)*+)?)\b", re.IGNORECASE
)
_SEVERITY_WORDS = {
    "crit": "critical",
    "page": "high",
    "major": "high",
    "warn": "medium",
    "minor": "low",
}


def _first(text: str, table: tuple[tuple[str, tuple[str, ...]], ...], default: str) -> str:
    for name, words in table:
        if any(w in text for w in words):
            return name
    return default


def extract_scenario(
    text: str, now: dt.datetime, hints: Mapping[str, object] | None = None
) -> Scenario:
    low = f" {text.lower()} "
    labels = {k.lower(): v for k, v in _LABEL.findall(text)}
    severity = normalise_severity(str(labels["severity"])) if "severity" in labels else ""
    if severity not in SEVERITIES:
        severity = next((v for k, v in _SEVERITY_WORDS.items() if k in low), "")
        severity = severity or next((s for s in SEVERITIES if f" {s} " in low), "medium")
    redundancy = 1
    if "redundancy" in labels and str(labels["redundancy"]).isdigit():
        redundancy = int(labels["redundancy"])
    elif "last path" in low or "single path" in low or "no redundancy" in low:
        redundancy = 0
    device_match = _DEVICE.search(text)
    fields: dict[str, object] = {
        "component": str(labels.get("component") or _first(low, _COMPONENTS, "unknown")),
        "fault_type": str(labels.get("fault_type") or _first(low, _FAULTS, "unknown")),
        "severity": severity,
        "redundancy": redundancy,
        "maintenance_window": "maintenance window" in low and "outside" not in low,
        "hour_of_day": now.hour,
        "text": text.strip(),
        "device": str(
            labels.get("device")
            or labels.get("instance")
            or (device_match.group(1) if device_match else "")
        ),
    }
    fields.update(hints or {})
    return Scenario(**fields)  # type: ignore[arg-type]
