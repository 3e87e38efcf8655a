"""The ops synonym lexicon (``data/ops_lexicon.txt``): operators' words → the concept a runbook
names, as data so it can be reviewed and extended without touching code.

Matching runs on the tokenizer's words, longest variant first, in one left-to-right pass
(at most ``longest`` words looked ahead per position: linear in the text). Each match adds
its concept as one extra term ``~concept``; the words themselves stay, so exact wording
still counts and the concept only bridges the vocabulary gap.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_LEXICON = Path(__file__).with_name("data") / "ops_lexicon.txt"


class LexiconError(ValueError):
    """A line of the lexicon file is unusable; the message names the file and line."""


_RAW_WORD = re.compile(r"[a-z0-9]+")


def raw_words(text: str) -> list[str]:
    """Lowercase words as written (no stemming): what a rewrite swaps."""
    return _RAW_WORD.findall(text.lower())


@dataclass(frozen=True, slots=True)
class Lexicon:
    variants: dict[tuple[str, ...], str]  # stemmed word sequence → concept
    longest: int
    spellings: dict[str, tuple[str, ...]] = field(default_factory=dict)  # concept → variants
    fingerprint: str = ""

    @classmethod
    def empty(cls) -> Lexicon:
        return cls({}, 0)

    @classmethod
    def load(cls, path: Path = DEFAULT_LEXICON) -> Lexicon:
        from retrieval.bm25 import words

        variants: dict[tuple[str, ...], str] = {}
        spellings: dict[str, list[str]] = {}
        text = path.read_text(encoding="utf-8")
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            concept, sep, rest = line.partition(":")
            concept = concept.strip()
            if not sep or not concept or not rest.strip():
                raise LexiconError(f"{path}:{n}: expected 'concept: variant, variant, ...'")
            for variant in rest.split(","):
                key = tuple(words(variant))
                if key:
                    variants.setdefault(key, concept)
                    spellings.setdefault(concept, []).append(" ".join(raw_words(variant)))
        return cls(
            variants,
            max((len(k) for k in variants), default=0),
            {c: tuple(v) for c, v in spellings.items()},
            hashlib.sha256(text.encode("utf-8")).hexdigest()[:16],
        )

    def rewrite(self, text: str, rng: random.Random, rate: float = 0.5) -> str:
        """``text`` with some lexicon variants swapped for another spelling of the same
        concept ("flapping" → "going up and down"): synthetic operator wording for the
        calibration's self-queries. Lowercase words out; one pass, linear."""
        from retrieval.bm25 import words

        tokens = raw_words(text)
        out: list[str] = []
        i = 0
        while i < len(tokens):
            for size in range(min(self.longest, len(tokens) - i), 0, -1):
                concept = self.variants.get(tuple(words(" ".join(tokens[i : i + size]))))
                if concept is not None:
                    choices = self.spellings.get(concept, ())
                    if choices and rng.random() < rate:
                        out.append(rng.choice(choices))
                    else:
                        out.extend(tokens[i : i + size])
                    i += size
                    break
            else:
                out.append(tokens[i])
                i += 1
        return " ".join(out)

    def concepts(self, tokens: Sequence[str]) -> list[str]:
        """The concept terms found in ``tokens`` (stemmed words, stop words included)."""
        out: list[str] = []
        i, n = 0, len(tokens)
        while i < n:
            for size in range(min(self.longest, n - i), 0, -1):
                concept = self.variants.get(tuple(tokens[i : i + size]))
                if concept is not None:
                    out.append("~" + concept)
                    i += size
                    break
            else:
                i += 1
        return out
