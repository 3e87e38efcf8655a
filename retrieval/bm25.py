"""Okapi BM25 over the same chunks the vector store holds, in numpy.

Tokens: lowercase words split at punctuation and camelCase, a small stop list, and light
suffix stripping so "failed", "failing" and "failure" meet; with a lexicon, the concepts of
the ops synonym lexicon found in the text are added as extra terms (``retrieval/lexicon.py``).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from retrieval.lexicon import Lexicon

# Linear: the alternatives are single character-class runs; the lookahead makes the
# capitals run give back at most one character (``HTTPServer`` → ``HTTP``, ``Server``).
_WORD = re.compile(r"[A-Za-z][a-z]+|[A-Z]+(?![a-z])|\d+")
_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "were",
        "will",
        "with",
        "not",
        "no",
        "can",
        "if",
        "then",
        "than",
        "when",
        "which",
        "who",
        "what",
        "your",
        "you",
        "we",
        "our",
    ]
)
_SUFFIXES = ("ations", "ation", "ments", "ment", "ingly", "ing", "ures", "ure", "ed", "es", "s")


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def words(text: str) -> list[str]:
    """Stemmed lowercase words, stop words included (what the lexicon matches on)."""
    return [_stem(w.lower()) for w in _WORD.findall(text)]


def tokenize(text: str, lexicon: Lexicon | None = None) -> list[str]:
    found = words(text)
    terms = [w for w in found if w not in _STOP]
    return terms + lexicon.concepts(found) if lexicon is not None else terms


def query_terms(text: str, lexicon: Lexicon | None = None) -> list[str]:
    """A query's distinct terms in a fixed order, so its scores add up the same way in
    every process (a set's order changes with the hash seed)."""
    return sorted(set(tokenize(text, lexicon)))


class BM25Index:
    def __init__(
        self,
        texts: Sequence[str],
        k1: float = 1.2,
        b: float = 0.75,
        lexicon: Lexicon | None = None,
    ) -> None:
        self.lexicon = lexicon  # k1 and b are baked into the postings' weights
        self.size = len(texts)
        lengths = np.zeros(self.size)
        postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for i, text in enumerate(texts):
            counts = Counter(tokenize(text, lexicon))
            lengths[i] = sum(counts.values())
            for term, tf in counts.items():
                postings[term].append((i, tf))
        avg = float(lengths.mean()) if self.size else 1.0
        norm = k1 * (1 - b + b * lengths / max(avg, 1e-9))
        # Each posting's contribution depends on the document and the term only, never on
        # the query: it is computed here once, and a query adds up the postings of its terms.
        self._postings: dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]] = {}
        for term, plist in postings.items():
            docs = np.fromiter((d for d, _ in plist), dtype=np.int64, count=len(plist))
            tfs = np.fromiter((t for _, t in plist), dtype=np.float64, count=len(plist))
            idf = math.log(1 + (self.size - len(plist) + 0.5) / (len(plist) + 0.5))
            self._postings[term] = (docs, idf * tfs * (k1 + 1) / (tfs + norm[docs]))

    def scores(self, query: str) -> npt.NDArray[np.float64]:
        return self.scores_of(query_terms(query, self.lexicon))

    def scores_of(self, terms: Sequence[str]) -> npt.NDArray[np.float64]:
        """Scores of ``terms`` as ``query_terms`` gives them: tokenize a query once for
        several indexes built with the same lexicon."""
        out = np.zeros(self.size)
        for term in terms:
            posting = self._postings.get(term)
            if posting is not None:
                docs, weights = posting
                out[docs] += weights
        return out
