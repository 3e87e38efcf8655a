"""Optional LLM augmentation (``NPO_LLM``, ``init_chat_model`` syntax such as
``openai:gpt-4o-mini``).

The model may only (1) name the component and fault type of an incident the deterministic
extractor could not classify, through LangChain structured output
(``with_structured_output``), and (2) phrase a one-sentence summary of an explanation.
Its answers are validated against the playbooks' vocabulary and bounded by a timeout;
anything unexpected, late or failing is dropped and the deterministic result stands. It
never sees or sets the facts the safety policies read (severity, redundancy, maintenance
window, device), never touches a score, and its summary is shown as a summary, not as the
policy verdict.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bot.extraction.rules import FAMILIES, Vocabulary
from core.decision import Decision

log = logging.getLogger(__name__)


class IncidentClass(BaseModel):
    """The component and fault type of a data-center incident (null when unsure)."""

    model_config = ConfigDict(extra="ignore")

    component: str | None = Field(None, description="One of the allowed components, or null.")
    fault_type: str | None = Field(None, description="One of the allowed fault types, or null.")


def template_summary(decision: Decision) -> str:
    """The deterministic summary used without an LLM (and when the LLM fails)."""
    exp = decision.explanation
    if decision.chosen is not None:
        verdict = exp.compliance.verdict.value.replace("_", " ")
        return (
            f"{decision.chosen.title}: score {exp.visual.score:.2f} clears "
            f"τ={exp.visual.threshold:.1f}; {verdict} by the safety policies."
        )
    if decision.outcome.value == "blocked":
        return f"Not recommended: {exp.compliance.summary}"
    if decision.pending is not None and decision.outcome.value in ("needs_approval", "deferred"):
        waits = (
            "awaits a second engineer" if decision.outcome.value == "needs_approval" else "waits"
        )
        return (
            f"{decision.pending.title}: score {exp.visual.score:.2f} clears "
            f"τ={exp.visual.threshold:.1f} but {waits}: {exp.compliance.summary}"
        )
    return (
        f"Not confident enough (best score {exp.visual.score:.2f} < τ={exp.visual.threshold:.1f})."
    )


class LLMAugmenter:
    def __init__(
        self, model: Any, vocabulary: Vocabulary | None = None, timeout_seconds: float = 5.0
    ) -> None:
        self._model = model
        self.vocabulary = vocabulary
        self.timeout_seconds = timeout_seconds
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="llm")

    @classmethod
    def from_name(
        cls, name: str, vocabulary: Vocabulary | None = None, timeout_seconds: float = 5.0
    ) -> LLMAugmenter:
        from langchain.chat_models import init_chat_model

        return cls(init_chat_model(name, temperature=0), vocabulary, timeout_seconds)

    def _within_timeout(self, call: Any) -> Any:
        future = self._pool.submit(call)
        try:
            return future.result(timeout=self.timeout_seconds)
        except FutureTimeout:
            future.cancel()
            raise TimeoutError(f"no answer within {self.timeout_seconds:g} s") from None

    def classify(self, text: str) -> Mapping[str, object]:
        """``component`` and/or ``fault_type`` when the model names allowed values; {} on
        any failure, timeout or value outside the vocabulary."""
        faults = self.vocabulary.fault_types if self.vocabulary else []
        prompt = (
            "Classify this data-center incident. Use only these values, or null when the "
            f"text does not say.\ncomponents: {', '.join(FAMILIES)}\n"
            f"fault types: {', '.join(faults) or '(any snake_case name)'}\n\n"
            f"Incident: {text[:2000]}"
        )
        try:
            structured = self._model.with_structured_output(IncidentClass)
            answer = self._within_timeout(lambda: structured.invoke(prompt))
            got = (
                answer
                if isinstance(answer, IncidentClass)
                else IncidentClass.model_validate(answer)
            )
        except Exception as exc:  # the model is optional: any failure falls back
            log.warning("LLM classification ignored", extra={"reason": str(exc)[:200]})
            return {}
        out: dict[str, object] = {}
        if got.component in FAMILIES:
            out["component"] = got.component
        if got.fault_type is not None and (
            got.fault_type in faults if self.vocabulary else _is_name(got.fault_type)
        ):
            out["fault_type"] = got.fault_type
        dropped = {"component": got.component, "fault_type": got.fault_type}.keys() - out.keys()
        if any(getattr(got, k) is not None for k in dropped):
            log.warning(
                "LLM classification outside the vocabulary dropped",
                extra={k: str(getattr(got, k))[:60] for k in dropped},
            )
        return out

    def summarise(self, decision: Decision) -> str:
        fallback = template_summary(decision)
        prompt = (
            "Rewrite this incident-response decision as one plain sentence for an operator, "
            "without adding facts:\n" + fallback + "\n" + "\n".join(decision.explanation.trace)
        )
        try:
            text = str(self._model.invoke(prompt).content).strip()
        except Exception as exc:  # the model is optional: any failure falls back
            log.warning("LLM summary failed, using the template: %s", exc)
            return fallback
        return text[:300] if text and "\n" not in text.strip() else fallback


def _is_name(value: str) -> bool:
    return (
        2 <= len(value) <= 40
        and value[0].isalpha()
        and all(c.islower() or c.isdigit() or c == "_" for c in value)
    )
