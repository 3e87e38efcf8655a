"""An incident's scenario: what its text names (extraction), plus the facts its context
sources report, each with its provenance; what nobody knows stays unknown."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence

from bot.context.facts import IncidentRef, Observed
from bot.context.gather import ContextGatherer
from bot.context.labels import LabelsProvider
from bot.extraction.rules import Vocabulary, extract
from core.scenario import Provenance, Scenario

_LABELS = LabelsProvider()
# The facts a provider may set, and how each becomes a Scenario field.
_SETTABLE = ("severity", "redundancy", "utilisation", "maintenance_window", "recent_faults")


def scenario_for(
    text: str,
    labels: Mapping[str, object],
    now: dt.datetime,
    hits: Sequence[tuple[str, float]] = (),
    vocabulary: Vocabulary | None = None,
    context: ContextGatherer | None = None,
    classify: Callable[[str], Mapping[str, object]] | None = None,
) -> Scenario:
    """``labels`` are the alert's labels (or an adapter's hints); ``classify`` is the
    optional LLM extractor, asked only for what extraction left unknown."""
    str_labels = {k.lower(): str(v) for k, v in labels.items()}
    found = extract(text, vocabulary, hits, str_labels)
    component, fault = found.component, found.fault_type
    provenance: dict[str, Provenance] = {}
    how = "alert label" if str_labels else "message"
    if classify is not None and (component is None or fault is None):
        said = classify(text)  # validated against the vocabulary by the extractor
        if component is None and isinstance(said.get("component"), str):
            component = str(said["component"])
            provenance["component"] = Provenance("llm")
        if fault is None and isinstance(said.get("fault_type"), str):
            fault = str(said["fault_type"])
            provenance["fault_type"] = Provenance("llm")
    for name, value in (("component", component), ("fault_type", fault)):
        if value is not None and name not in provenance:
            stated = name in str_labels
            provenance[name] = Provenance("alert label" if stated else "extraction")
    if found.device:
        provenance["device"] = Provenance(how if "device" in str_labels else "message")
    ref = IncidentRef(
        text=text,
        now=now,
        device=found.device,
        interface=found.interface,
        component=component,
        labels=str_labels,
    )
    facts: dict[str, Observed] = (
        context.gather(ref).facts if context is not None else dict(_LABELS.facts(ref, 0.0))
    )
    fields: dict[str, object] = {
        "component": component,
        "fault_type": fault,
        "severity": None,
        "redundancy": None,
        "utilisation": None,
        "maintenance_window": None,
        "hour_of_day": _hour(labels.get("hour_of_day"), now),
        "text": text.strip(),
        "device": found.device,
        "interface": found.interface,
    }
    if found.severity is not None:
        fields["severity"] = found.severity
        provenance["severity"] = Provenance(
            "alert label" if "severity" in str_labels else "message"
        )
    for name in _SETTABLE:
        if name in facts:
            fields[name] = facts[name].value
            provenance[name] = facts[name].provenance(now)
    return Scenario(**fields, provenance=tuple(provenance.items()))  # type: ignore[arg-type]


def _hour(hint: object, now: dt.datetime) -> int:
    """An adapter may pin the hour (an evaluation run at midday); otherwise the clock's."""
    if isinstance(hint, int) and not isinstance(hint, bool) and 0 <= hint <= 23:
        return hint
    return now.hour
