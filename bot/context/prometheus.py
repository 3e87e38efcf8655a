"""Facts from Prometheus: one PromQL template per component and fact, evaluated with the
incident's device and interface.

Templates use ``$device`` and ``$interface`` (``string.Template``: PromQL's own braces stay
as they are); values are escaped as PromQL string literals, so a device name can never
change the query. A template whose placeholder has no value (no interface in the
incident) is not run: its fact stays unknown. The age of a fact is the age of the newest
sample behind it when the configuration gives a ``freshness`` query (``timestamp(...)`` of
the raw series); otherwise it is as of the query.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from string import Template

import httpx

from bot.context.facts import IncidentRef, Observed

FACTS = ("redundancy", "utilisation")


class PrometheusError(RuntimeError):
    """The server answered with an error or something that is not one number."""


@dataclass(frozen=True, slots=True)
class FactQuery:
    query: str
    freshness: str = ""


@dataclass(frozen=True, slots=True)
class PrometheusConfig:
    url: str
    components: Mapping[str, Mapping[str, FactQuery]] = field(default_factory=dict)
    max_age_seconds: float = 600.0  # an older sample is not a fact any more


def promql_string(value: str) -> str:
    """A PromQL double-quoted string literal's content for ``value``."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(template: str, incident: IncidentRef) -> str | None:
    values = {"device": incident.device, "interface": incident.interface}
    names = {m.group("named") or m.group("braced") for m in Template.pattern.finditer(template)}
    names.discard(None)
    if any(not values.get(str(n)) for n in names):
        return None
    return Template(template).substitute({k: promql_string(v) for k, v in values.items()})


class PrometheusProvider:
    name = "prometheus"

    def __init__(self, config: PrometheusConfig, client: httpx.Client | None = None) -> None:
        self.config = config
        self._client = client or httpx.Client(base_url=config.url.rstrip("/"))

    def facts(self, incident: IncidentRef, timeout: float) -> Mapping[str, Observed]:
        queries = self.config.components.get(incident.component or "", {})
        found: dict[str, Observed] = {}
        for fact in FACTS:
            spec = queries.get(fact)
            query = render(spec.query, incident) if spec else None
            if spec is None or query is None:
                continue
            value, at = self._scalar(query, incident.now, timeout)
            if value is None:
                continue
            freshness = render(spec.freshness, incident) if spec.freshness else None
            if freshness:
                stamp, _ = self._scalar(freshness, incident.now, timeout)
                at = dt.datetime.fromtimestamp(stamp, dt.UTC) if stamp is not None else None
                if at is None:
                    continue  # no sample behind the fact: unknown
            age = (incident.now - at).total_seconds() if at else 0.0
            if age > self.config.max_age_seconds:
                continue
            observed = _as_fact(fact, value)
            if observed is not None:
                found[fact] = Observed(observed, "prometheus", at, query)
        return found

    def _scalar(
        self, query: str, now: dt.datetime, timeout: float
    ) -> tuple[float | None, dt.datetime | None]:
        """The single value of an instant query at ``now`` (None: empty result)."""
        response = self._client.get(
            "/api/v1/query",
            params={"query": query, "time": f"{now.timestamp():.3f}"},
            timeout=timeout,
        )
        body = response.json()
        if body.get("status") != "success":
            raise PrometheusError(f"{body.get('errorType')}: {body.get('error')} in {query!r}")
        data = body["data"]
        if data["resultType"] == "scalar":
            stamp, raw = data["result"]
        elif data["resultType"] == "vector":
            if not data["result"]:
                return None, None
            if len(data["result"]) > 1:
                raise PrometheusError(f"{len(data['result'])} series for {query!r}: need one")
            stamp, raw = data["result"][0]["value"]
        else:
            raise PrometheusError(f"{data['resultType']} result for {query!r}: need a number")
        value = float(raw)
        if math.isnan(value) or math.isinf(value):
            return None, None
        return value, dt.datetime.fromtimestamp(float(stamp), dt.UTC)


def _as_fact(name: str, value: float) -> object | None:
    if name == "redundancy":
        return int(value) if value >= 0 else None
    return value if 0.0 <= value <= 1.0 else None
