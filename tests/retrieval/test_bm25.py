"""BM25 scores against the Okapi formula written out, and the same bits in every process."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections import Counter

import numpy as np

from retrieval.bm25 import BM25Index, tokenize
from tests.conftest import ROOT

TEXTS = [
    "Disk latency on the RAID controller: the cache battery failed",
    "Fan failure raises the PSU temperature; replace the fan tray",
    "BGP session flapping between leaf and spine after an MTU change",
    "Disk full on /var: rotate the logs, then check the disk again",
    "Controller cache disabled while the battery relearns",
]
QUERY = "disk latency controller battery fan temperature bgp"


def _okapi(texts: list[str], query: str, k1: float = 1.2, b: float = 0.75) -> np.ndarray:
    docs = [Counter(tokenize(t)) for t in texts]
    avg = sum(sum(d.values()) for d in docs) / len(docs)
    out = np.zeros(len(docs))
    for term in set(tokenize(query)):
        df = sum(term in d for d in docs)
        idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
        for i, d in enumerate(docs):
            tf, length = d[term], sum(d.values())
            out[i] += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / avg))
    return out


def test_scores_are_the_okapi_formula() -> None:
    index = BM25Index(TEXTS)
    np.testing.assert_allclose(index.scores(QUERY), _okapi(TEXTS, QUERY), rtol=1e-12)
    assert index.scores("nothing matches here").tolist() == [0.0] * len(TEXTS)


_SCORES_IN_A_PROCESS = """
from retrieval.bm25 import BM25Index
texts = [(f"disk {w} latency errors node raid controller cache battery {i % 7} fan psu "
          "temperature ") * (1 + i % 3) for i, w in enumerate(["alpha", "beta", "gamma"] * 30)]
query = "disk latency errors node raid controller cache battery fan psu temperature alpha"
print(BM25Index(texts).scores(query).tobytes().hex())
"""


def test_scores_are_the_same_bits_whatever_the_hash_seed() -> None:
    """A query's terms are added in one order: with a set's order (it moves with the
    hash seed) two processes ranked near-ties differently."""
    seen = set()
    for seed in ("1", "2", "3", "4"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run(
            [sys.executable, "-c", _SCORES_IN_A_PROCESS],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        seen.add(run.stdout)
    assert len(seen) == 1
