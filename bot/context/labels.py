"""Facts stated by the incident itself: the alert's labels and explicit ``key=value`` in a
message (``redundancy=2``, ``maintenance_window=yes``). Both are as old as the incident."""

from __future__ import annotations

import re
from collections.abc import Mapping

from bot.context.facts import IncidentRef, Observed
from bot.extraction.severity import normalise_severity
from core.scenario import SEVERITIES

# Linear: possessive repetitions, each followed by a character it cannot match.
_PAIR = re.compile(r"(?<![\w.-])([a-z_]++)\s*+=\s*+\"?+([\w.:/%-]++)", re.IGNORECASE)
_YES = {"yes", "true", "1", "on", "in", "inside"}
_NO = {"no", "false", "0", "off", "out", "outside"}
_KEYS = {
    "redundancy": "redundancy",
    "utilisation": "utilisation",
    "utilization": "utilisation",
    "maintenance_window": "maintenance_window",
    "maintenance": "maintenance_window",
    "in_maintenance": "maintenance_window",
    "severity": "severity",
}


def parse_fact(key: str, raw: str) -> tuple[str, object] | None:
    """A label or pair as a scenario fact, or None when the key is not a fact or the value
    is not one the fact can take (a bad value is ignored, never guessed at)."""
    name = _KEYS.get(key.lower())
    value = raw.strip().lower()
    if name == "redundancy":
        return (name, int(value)) if value.isdigit() and len(value) <= 4 else None
    if name == "utilisation":
        try:
            number = float(value.rstrip("%")) / (100 if value.endswith("%") else 1)
        except ValueError:
            return None
        return (name, number) if 0.0 <= number <= 1.0 else None
    if name == "maintenance_window":
        if value in _YES or value in _NO:
            return name, value in _YES
        return None
    if name == "severity":
        severity = normalise_severity(value)
        return (name, severity) if severity in SEVERITIES else None
    return None


# What an operator states in words (not a guess: the text says it). Linear: no nesting.
_STATEMENTS: tuple[tuple[re.Pattern[str], str, object], ...] = (
    (
        re.compile(r"\boutside (?:of )?(?:the |a )?maintenance window", re.I),
        "maintenance_window",
        False,
    ),
    (
        re.compile(r"\b(?:in|inside|during) (?:the |a |our )?maintenance window", re.I),
        "maintenance_window",
        True,
    ),
    (
        re.compile(r"\b(?:last path|single path|no redundancy|no spare path)\b", re.I),
        "redundancy",
        0,
    ),
)


def stated_facts(text: str) -> dict[str, tuple[object, str]]:
    """Facts the text states in words (``in maintenance window``, ``last path``)."""
    found: dict[str, tuple[object, str]] = {}
    for pattern, name, value in _STATEMENTS:
        match = pattern.search(text)
        if match and name not in found:
            found[name] = (value, match.group(0))
    return found


def message_pairs(text: str) -> dict[str, str]:
    """Every ``key=value`` in a text (the first occurrence of a key wins)."""
    pairs: dict[str, str] = {}
    for key, value in _PAIR.findall(text):
        pairs.setdefault(key.lower(), value)
    return pairs


class LabelsProvider:
    """Alert labels first (the monitoring system said it), then the message's pairs."""

    name = "labels"

    def facts(self, incident: IncidentRef, timeout: float) -> Mapping[str, Observed]:
        found: dict[str, Observed] = {}
        for source, pairs in (
            ("alert label", incident.labels),
            ("message", message_pairs(incident.text)),
        ):
            for key, raw in pairs.items():
                fact = parse_fact(key, str(raw))
                if fact is not None and fact[0] not in found:
                    found[fact[0]] = Observed(fact[1], source, detail=f"{key}={raw}")
        for name, (value, words) in stated_facts(incident.text).items():
            found.setdefault(name, Observed(value, "message", detail=words))
        return found
