"""``python -m retrieval.adapt --corpus DIR --out var/models/NAME``: adapt the embedding model
to a corpus, offline, as an explicit command (never at start-up or import).

Training pairs come from the corpus itself, never from an evaluation set: for every document
the calibration's self-queries (``retrieval.calibration.self_queries``: its title, its alert or
file name spelled as words, its symptom/meaning lines, a terse page of a few of its words),
each also rewritten through the ops lexicon ("flapping" → "going up and down"), paired with a
chunk of the same document as it is indexed (title line included). Sentence-transformers'
``MultipleNegativesRankingLoss`` (the other passages of a batch are the negatives; a batch
never holds two documents of one family, so a copy of the same runbook in another source is
never a negative) trains the model for one or two epochs on the CPU with a small batch.

The output is an ordinary sentence-transformers folder: set ``NPO_EMBEDDING_MODEL`` (setting
``embedding_model``) to it; the next ingest (at start, or ``npo playbooks ingest``) sees that
the stored chunks were embedded by another model and re-embeds them, so the stored vectors
come from the same model as the queries. ``adaptation.json`` in the folder records the base
model, the corpus, the parameters, the pair counts and the training time.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from retrieval.calibration import self_queries
from retrieval.chunking import EXPANSION, Document, chunk_document
from retrieval.lexicon import Lexicon
from retrieval.store import StoredChunk


@dataclass(frozen=True, slots=True)
class TrainingPair:
    query: str
    passage: str
    doc_id: str
    family: str  # copies of one runbook share it: never in-batch negatives of each other


def _family(doc_id: str) -> str:
    from retrieval.evaluate import runbook_family

    return runbook_family(doc_id)


def training_pairs(
    docs: Sequence[Document],
    lexicon: Lexicon,
    seed: int = 0,
    per_doc: int = 6,
    family: Callable[[str], str] = _family,
) -> list[TrainingPair]:
    """(synthetic query → chunk of its document) pairs from the documents alone.

    Each self-query appears as written and rewritten through the lexicon (when the rewrite
    differs). Its passage is one of the document's indexed chunks (not the expansion chunk,
    which is derived text): a symptom line is paired with a chunk that does not contain it
    when the document has one, so the pair says what the document is about rather than
    repeating a line; a title or name query with any chunk of the document."""
    rng = random.Random(seed)
    out: list[TrainingPair] = []
    for doc in docs:
        chunks = chunk_document(doc, lexicon=lexicon)
        body = [c for c in chunks if c.metadata.get("kind") != EXPANSION]
        if not body:
            continue
        stored = [StoredChunk(c.chunk_id, c.text, c.metadata) for c in chunks]
        fam = family(doc.doc_id)
        seen: set[tuple[str, str]] = set()
        for query in self_queries(stored, rng, per_doc):
            others = [c for c in body if query.lower() not in c.text.lower()] or body
            for variant in dict.fromkeys((query, lexicon.rewrite(query, rng))):
                passage = rng.choice(others).text
                if (variant.lower(), passage) in seen:
                    continue
                seen.add((variant.lower(), passage))
                out.append(TrainingPair(variant, passage, doc.doc_id, fam))
    return out


def batches(
    pairs: Sequence[TrainingPair], batch_size: int, rng: random.Random
) -> list[list[TrainingPair]]:
    """Shuffled batches in which no two pairs share a family (in-batch negatives must be
    wrong answers). A pair that cannot join a batch waits for the next one; trailing pairs
    that would make a batch of one are dropped (MNRL needs a negative)."""
    pending = list(pairs)
    rng.shuffle(pending)
    out: list[list[TrainingPair]] = []
    while pending:
        batch: list[TrainingPair] = []
        families: set[str] = set()
        rest: list[TrainingPair] = []
        for pair in pending:
            if len(batch) < batch_size and pair.family not in families:
                batch.append(pair)
                families.add(pair.family)
            else:
                rest.append(pair)
        if len(batch) < 2:
            break
        out.append(batch)
        pending = rest
    return out


@dataclass(frozen=True, slots=True)
class AdaptConfig:
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 5e-5
    warmup: float = 0.1
    max_seq_length: int = 64  # tokens of a training passage (the title and its first lines)
    max_pairs: int = 2000  # 63 steps of 32: a few minutes on 2 cores
    per_doc: int = 6
    seed: int = 0


def train(
    base: str,
    pairs: Sequence[TrainingPair],
    out: Path,
    config: AdaptConfig,
    log: Callable[[str], None] = print,
) -> dict[str, object]:
    """Fine-tune ``base`` on ``pairs`` with MultipleNegativesRankingLoss; save to ``out``."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import (
        MultipleNegativesRankingLoss,
    )

    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    if config.max_pairs and len(pairs) > config.max_pairs:
        pairs = rng.sample(list(pairs), config.max_pairs)
    model = SentenceTransformer(base, device="cpu")
    inference_length = model.max_seq_length
    model.max_seq_length = min(inference_length or config.max_seq_length, config.max_seq_length)
    loss_fn = MultipleNegativesRankingLoss(model)
    plan = [batches(pairs, config.batch_size, rng) for _ in range(config.epochs)]
    steps = sum(len(p) for p in plan)
    if steps == 0:
        raise ValueError("too few training pairs for one batch")
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    warmup = max(1, int(steps * config.warmup))

    def schedule(step: int) -> float:  # linear warm-up, then linear decay to 0
        return (step + 1) / warmup if step < warmup else max(0.0, (steps - step) / (steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    started = time.perf_counter()
    step, running = 0, 0.0
    every = max(1, steps // 20)
    log(
        f"adapt: {len(pairs)} pairs, {steps} steps of {config.batch_size}, {config.epochs} epoch(s)"
    )
    for epoch, epoch_batches in enumerate(plan, 1):
        for batch in epoch_batches:
            features = [
                model.preprocess([p.query for p in batch]),
                model.preprocess([p.passage for p in batch]),
            ]
            loss = loss_fn(features, torch.empty(0))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            running += float(loss.detach())
            if step % every == 0 or step == steps:
                elapsed = time.perf_counter() - started
                eta = elapsed / step * (steps - step)
                log(
                    f"adapt: epoch {epoch} step {step}/{steps} loss {running / every:.4f} "
                    f"elapsed {elapsed:.0f} s, about {eta:.0f} s to go"
                )
                running = 0.0
    seconds = time.perf_counter() - started
    model.eval()
    model.max_seq_length = inference_length
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out))
    return {"pairs": len(pairs), "steps": steps, "train_s": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--corpus", type=Path, required=True, help="runbooks folder, or runbooks-v1")
    ap.add_argument("--out", type=Path, required=True, help="folder of the adapted model")
    ap.add_argument("--base", help="model name or path to start from (default: bundled MiniLM)")
    ap.add_argument("--playbooks", action="store_true", help="the corpus is a playbooks folder")
    defaults = AdaptConfig()
    ap.add_argument("--epochs", type=int, default=defaults.epochs)
    ap.add_argument("--batch-size", type=int, default=defaults.batch_size)
    ap.add_argument("--lr", type=float, default=defaults.learning_rate)
    ap.add_argument("--max-seq-length", type=int, default=defaults.max_seq_length)
    ap.add_argument("--max-pairs", type=int, default=defaults.max_pairs, help="0: all")
    ap.add_argument("--per-doc", type=int, default=defaults.per_doc, help="self-queries a doc")
    ap.add_argument("--seed", type=int, default=defaults.seed)
    args = ap.parse_args(argv)
    config = AdaptConfig(
        args.epochs,
        args.batch_size,
        args.lr,
        defaults.warmup,
        args.max_seq_length,
        args.max_pairs,
        args.per_doc,
        args.seed,
    )
    if config.epochs < 1 or config.batch_size < 2 or not math.isfinite(config.learning_rate):
        print("adapt: --epochs ≥ 1 and --batch-size ≥ 2 are needed", file=sys.stderr)
        return 2
    from retrieval.embeddings import bundled_model_path

    docs = _documents(args.corpus, args.playbooks)
    if not docs:
        print(f"adapt: {args.corpus}: no documents", file=sys.stderr)
        return 2
    pairs = training_pairs(docs, Lexicon.load(), config.seed, config.per_doc)
    base = args.base or str(bundled_model_path())
    print(f"adapt: {len(docs)} documents, {len(pairs)} training pairs from {args.corpus}")
    result = train(base, pairs, args.out, config, lambda m: print(m, flush=True))
    record = {
        "base": base if args.base else "bundled all-MiniLM-L6-v2",
        "corpus": str(args.corpus),
        "documents": len(docs),
        "pairs_built": len(pairs),
        "config": asdict(config),
        **result,
    }
    (args.out / "adaptation.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"adapt: saved to {args.out} in {result['train_s']} s of training")
    return 0


def _documents(corpus: Path, playbooks: bool) -> list[Document]:
    if playbooks:
        from retrieval.corpus import playbook_document
        from retrieval.playbook import Status, lint_folder

        report = lint_folder(corpus)
        if report.errors:
            raise SystemExit(f"adapt: {report.errors[0]}")
        return [playbook_document(pb) for pb in report.playbooks if pb.meta.status is Status.VETTED]
    from retrieval.corpus import runbook_documents

    folder = corpus / "runbooks" if (corpus / "runbooks").is_dir() else corpus
    return runbook_documents(folder)


if __name__ == "__main__":
    raise SystemExit(main())
