"""Optional LLM augmentation (``NPO_LLM``, ``init_chat_model`` syntax such as
``openai:gpt-4o-mini``).

The model may only (1) name the component and fault type of an incident the keyword
extractor could not classify, and (2) phrase a one-sentence summary of an explanation.
Its output is validated; anything unexpected is dropped. It never sees or sets the fields
the safety policies read (severity, redundancy, maintenance window, device), never touches
a score, and its summary is shown as a summary, not as the policy verdict.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.decision import Decision

log = logging.getLogger(__name__)
_NAME = r"^[a-z][a-z0-9_]{1,39}$"


def _json_object(raw: str) -> str | None:
    """From the first ``{`` to the last ``}`` (models wrap JSON in prose or fences). Two
    scans instead of ``\\{.*\\}``, which retries from every ``{`` when no ``}`` follows."""
    start, end = raw.find("{"), raw.rfind("}")
    return raw[start : end + 1] if start != -1 and end > start else None


class _Classification(BaseModel):
    model_config = ConfigDict(extra="ignore")

    component: str = Field(pattern=_NAME)
    fault_type: str = Field(pattern=_NAME)


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
    def __init__(self, model: Any) -> None:
        self._model = model

    @classmethod
    def from_name(cls, name: str) -> LLMAugmenter:
        from langchain.chat_models import init_chat_model

        return cls(init_chat_model(name, temperature=0))

    def classify(self, text: str) -> Mapping[str, object]:
        prompt = (
            "Classify this data-center incident. Answer with JSON only: "
            '{"component": "<one word, snake_case>", "fault_type": "<snake_case>"}.\n\n'
            f"Incident: {text[:2000]}"
        )
        try:
            raw = str(self._model.invoke(prompt).content)
            found = _json_object(raw)
            if found is None:
                return {}
            return _Classification.model_validate(json.loads(found)).model_dump()
        except (ValidationError, ValueError) as exc:
            log.warning("LLM classification ignored: %s", exc)
            return {}
        except Exception as exc:  # the model is optional: any failure falls back
            log.warning("LLM unavailable, using keywords: %s", exc)
            return {}

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
