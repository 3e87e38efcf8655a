"""The ops synonym lexicon and the lexical scoring it feeds."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from retrieval.bm25 import BM25Index, tokenize
from retrieval.lexicon import Lexicon, LexiconError


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return Lexicon.load()


def test_operator_words_and_runbook_names_meet_in_one_concept(lexicon: Lexicon) -> None:
    def concepts(text: str) -> set[str]:
        return {t for t in tokenize(text, lexicon) if t.startswith("~")}

    assert "~flap" in concepts("eth1 going up and down every few seconds")
    assert "~flap" in concepts("NodeNetworkInterfaceFlapping")
    assert "~receive" in concepts("rx errors on ens3") & concepts("NodeNetworkReceiveErrs")
    assert "~notready" in concepts("KubeNodeNotReady") & concepts("worker-3 is not ready")
    assert "~oom" in concepts("the pod ran out of memory") & concepts("OOMKilled")
    assert "~flap" not in concepts("bounce the port")  # an action, not a symptom


def test_lexicon_bridges_a_vocabulary_gap_in_bm25(lexicon: Lexicon) -> None:
    texts = [
        "Node network receive errors: the interface reports many receive errors",
        "Node network transmit errors: the interface reports many transmit errors",
        "Disk almost full",
    ]
    query = "rx errs climbing on eth0"
    plain = BM25Index(texts).scores(query)
    bridged = BM25Index(texts, lexicon=lexicon).scores(query)
    assert plain[0] == plain[1] == 0.0  # no word in common: nothing to go on
    assert bridged[0] > bridged[1] > bridged[2] == 0.0


def test_rewrite_swaps_spellings_of_the_same_concept(lexicon: Lexicon) -> None:
    text = "interface flapping with rx errors"
    rewritten = {lexicon.rewrite(text, random.Random(seed), rate=1.0) for seed in range(10)}
    assert len(rewritten) > 1
    for variant in rewritten:
        assert {"~flap", "~receive"} <= set(tokenize(variant, lexicon))
    assert lexicon.rewrite(text, random.Random(3)) == lexicon.rewrite(text, random.Random(3))


def test_a_bad_lexicon_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "lex.txt"
    path.write_text("# comment\nflap: flapping, bouncing\nno separator here\n")
    with pytest.raises(LexiconError, match=r"lex.txt:3: expected 'concept: variant"):
        Lexicon.load(path)
