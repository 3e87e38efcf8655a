"""Run every context provider concurrently within one time budget.

Each provider runs in a worker thread; whatever has not answered when the budget is spent
is left behind (its facts stay unknown) and logged once, with the reason. A provider that
raises is logged the same way. Earlier providers in the configuration win when two report
the same fact (the incident's own labels come first: the operator said so).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from bot.context.facts import ContextProvider, IncidentRef, Observed

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Gathered:
    facts: dict[str, Observed]
    failed: dict[str, str] = field(default_factory=dict)  # provider → why it gave nothing
    elapsed_ms: float = 0.0


class ContextGatherer:
    """Owns a small thread pool (built once, in the composition root)."""

    def __init__(
        self, providers: Sequence[ContextProvider], budget_seconds: float = 0.3, workers: int = 4
    ) -> None:
        if budget_seconds <= 0:
            raise ValueError(f"budget_seconds: {budget_seconds} must be > 0")
        self.providers = tuple(providers)
        self.budget_seconds = budget_seconds
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="context")

    def gather(self, incident: IncidentRef) -> Gathered:
        started = time.monotonic()
        futures: list[tuple[ContextProvider, Future[dict[str, Observed]]]] = [
            (p, self._pool.submit(_run, p, incident, self.budget_seconds)) for p in self.providers
        ]
        wait([f for _, f in futures], timeout=self.budget_seconds)
        facts: dict[str, Observed] = {}
        failed: dict[str, str] = {}
        for provider, future in futures:
            if not future.done():
                future.cancel()
                budget_ms = self.budget_seconds * 1000
                failed[provider.name] = f"no answer within the {budget_ms:.0f} ms budget"
                continue
            exc = future.exception()
            if exc is not None:
                failed[provider.name] = f"{type(exc).__name__}: {exc}"[:300]
                continue
            for name, observed in future.result().items():
                facts.setdefault(name, observed)
        for name, why in failed.items():
            log.warning(
                "context provider failed: its facts stay unknown",
                extra={"provider": name, "reason": why},
            )
        return Gathered(facts, failed, (time.monotonic() - started) * 1000)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _run(provider: ContextProvider, incident: IncidentRef, timeout: float) -> dict[str, Observed]:
    return dict(provider.facts(incident, timeout))
