"""The context configuration: one YAML file (``NPO_CONTEXT_CONFIG``) saying which sources
to ask and how. Every section is optional; without the file only the incident's own
labels and ``key=value`` pairs are read. Errors name the file and the field.

```yaml
budget_ms: 300                 # all providers together
labels: true                   # alert labels and key=value in messages
prometheus:
  url: http://prometheus:9090
  max_age_seconds: 600
  components:                  # the scenario's component → fact → PromQL template
    link:
      redundancy:
        query: 'count(lag_member_up{device="$device"} == 1) - 1'
        freshness: 'max(timestamp(lag_member_up{device="$device"}))'
      utilisation: 'max(iface_util_ratio{device="$device", interface="$interface"})'
maintenance:
  alertmanager: {url: http://alertmanager:9093, time_intervals: [weekly-maintenance]}
  calendar: /etc/npo/maintenance.ics
recent_faults: {hours: 24}
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.engine import Engine

from bot.context.facts import ContextProvider, MaintenanceCalendar
from bot.context.gather import ContextGatherer
from bot.context.labels import LabelsProvider
from bot.context.prometheus import FACTS, FactQuery, PrometheusConfig, PrometheusProvider
from bot.context.recent import RecentFaultsProvider
from bot.context.windows import AlertmanagerWindows, ICalendarWindows, WindowProvider


class ContextConfigError(ValueError):
    """The context file is malformed; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Query(_Strict):
    query: str = Field(min_length=1)
    freshness: str = ""


class _Prometheus(_Strict):
    url: str = Field(pattern=r"^https?://")
    max_age_seconds: float = Field(600.0, gt=0)
    components: dict[str, dict[str, _Query | str]] = Field(default_factory=dict)

    @field_validator("components")
    @classmethod
    def _facts(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for component, queries in value.items():
            for fact in queries:
                if fact not in FACTS:
                    raise ValueError(f"{component}.{fact}: not one of {', '.join(FACTS)}")
        return value


class _Alertmanager(_Strict):
    url: str = Field(pattern=r"^https?://")
    time_intervals: list[str] = Field(min_length=1)
    refresh_seconds: float = Field(300.0, gt=0)


class _Maintenance(_Strict):
    alertmanager: _Alertmanager | None = None
    calendar: Path | None = None


class _Recent(_Strict):
    hours: float = Field(24.0, gt=0)


class ContextConfig(_Strict):
    budget_ms: float = Field(300.0, gt=0, le=2500)  # the ack is never waiting, but a reply is
    labels: bool = True
    prometheus: _Prometheus | None = None
    maintenance: _Maintenance | None = None
    recent_faults: _Recent | None = None


def load_config(path: Path | None) -> ContextConfig:
    if path is None:
        return ContextConfig()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ContextConfigError(f"{path}: cannot read the context configuration ({exc})") from None
    except yaml.YAMLError as exc:
        raise ContextConfigError(f"{path}: not YAML ({exc})") from None
    try:
        config = ContextConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ContextConfigError(f"{path}: {where}: {first['msg']}") from None
    calendar = config.maintenance.calendar if config.maintenance else None
    if calendar is not None and not calendar.is_absolute():
        calendar = path.parent / calendar  # relative to the configuration file
        config = config.model_copy(
            update={"maintenance": config.maintenance.model_copy(update={"calendar": calendar})}  # type: ignore[union-attr]
        )
    return config


def build_gatherer(config: ContextConfig, engine: Engine | None = None) -> ContextGatherer:
    providers: list[ContextProvider] = []
    if config.labels:
        providers.append(LabelsProvider())
    if config.prometheus is not None:
        p = config.prometheus
        components = {
            name: {
                fact: FactQuery(q) if isinstance(q, str) else FactQuery(q.query, q.freshness)
                for fact, q in queries.items()
            }
            for name, queries in p.components.items()
        }
        providers.append(PrometheusProvider(PrometheusConfig(p.url, components, p.max_age_seconds)))
    for calendar, source in maintenance_calendars(config):
        providers.append(WindowProvider(calendar, source))
    if config.recent_faults is not None and engine is not None:
        providers.append(RecentFaultsProvider(engine, config.recent_faults.hours))
    return ContextGatherer(providers, config.budget_ms / 1000, workers=max(1, len(providers)))


def maintenance_calendars(config: ContextConfig) -> list[tuple[MaintenanceCalendar, str]]:
    """The configured window sources (the deferral path asks them for the next opening)."""
    out: list[tuple[MaintenanceCalendar, str]] = []
    m = config.maintenance
    if m is not None and m.alertmanager is not None:
        am = m.alertmanager
        out.append(
            (AlertmanagerWindows(am.url, am.time_intervals, am.refresh_seconds), "alertmanager")
        )
    if m is not None and m.calendar is not None:
        out.append((ICalendarWindows(m.calendar), "calendar"))
    return out
