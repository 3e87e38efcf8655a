"""The ONNX backend: exported offline from the bundled model, the same vectors as PyTorch,
exported once per cache folder, and a clear refusal of models it cannot run."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from retrieval.embeddings import (
    EmbeddingBackend,
    OnnxEmbedder,
    SentenceTransformerEmbedder,
    bundled_model_path,
    embedder_identity,
    make_embedder,
)
from retrieval.onnx_export import OnnxExportError, exported_model

TEXTS = [
    "CRC errors climbing on leaf-12 eth1/3",
    "BGP session to spine-2 went Idle after a maintenance window on the route reflectors",
    "disk",
    "certificate for api.internal expires in 3 days; renew it before the load balancer "
    "starts refusing TLS handshakes from the payment service " * 8,  # longer than 256 tokens
]


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def onnx_embedder(onnx_cache: Path) -> OnnxEmbedder:
    embedder = make_embedder(EmbeddingBackend.ONNX, cache_dir=onnx_cache)
    assert isinstance(embedder, OnnxEmbedder)
    return embedder


def test_onnx_vectors_match_pytorch(
    onnx_embedder: OnnxEmbedder, embedder: SentenceTransformerEmbedder
) -> None:
    ours = onnx_embedder.embed(TEXTS)
    reference = embedder.embed(TEXTS)
    assert ours.shape == reference.shape == (len(TEXTS), embedder.dimension)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cosines = (ours * reference).sum(axis=1)
    assert cosines.min() > 0.9999, cosines
    # one text alone gives what it gave in a padded batch (padding is masked out)
    assert np.allclose(onnx_embedder.embed([TEXTS[2]])[0], ours[2], atol=1e-5)
    assert onnx_embedder.embed([]).shape == (0, embedder.dimension)


def test_export_is_made_once_and_reused(onnx_embedder: OnnxEmbedder, onnx_cache: Path) -> None:
    path = onnx_embedder.path
    assert path.is_file() and path.is_relative_to(onnx_cache)
    before = path.stat().st_mtime_ns
    assert exported_model(bundled_model_path(), onnx_cache, quantized=False) == path
    assert path.stat().st_mtime_ns == before
    assert not list(path.parent.glob("*.tmp"))


def test_export_runs_plain_softmax_attention(onnx_embedder: OnnxEmbedder) -> None:
    # The exporter's default attention adds a NaN guard (IsNaN, Where) over every layer's
    # scores: a third of int8 run time here, for rows the tokenizer never fully masks.
    import onnx

    graph = onnx.load(str(onnx_embedder.path), load_external_data=False).graph
    ops = {node.op_type for node in graph.node}
    assert "Softmax" in ops
    assert "IsNaN" not in ops, sorted(ops)


def test_int8_export_sits_beside_and_stays_close(
    onnx_embedder: OnnxEmbedder, onnx_cache: Path
) -> None:
    int8 = make_embedder("onnx-int8", cache_dir=onnx_cache)
    assert isinstance(int8, OnnxEmbedder) and int8.path.name == "model.int8.onnx"
    assert int8.path.parent == onnx_embedder.path.parent
    cosines = (int8.embed(TEXTS) * onnx_embedder.embed(TEXTS)).sum(axis=1)
    assert 0.97 < cosines.min() < 0.99999  # quantised per channel: close, not the same


def test_each_backend_of_one_model_is_its_own_identity(
    onnx_embedder: OnnxEmbedder, onnx_cache: Path, embedder: SentenceTransformerEmbedder
) -> None:
    """The index and the calibration tell vectors apart by the embedder's identity: the
    same model files under another backend are another identity, the same ones agree."""
    int8 = make_embedder("onnx-int8", cache_dir=onnx_cache)
    identities = {embedder_identity(e) for e in (embedder, onnx_embedder, int8)}
    assert len(identities) == 3
    assert embedder_identity(onnx_embedder).startswith("onnx:")
    assert embedder_identity(int8).startswith("onnx-int8:")
    again = make_embedder(EmbeddingBackend.ONNX, cache_dir=onnx_cache)
    assert embedder_identity(again) == embedder_identity(onnx_embedder)
    # the bundled folder is known by its files, under every backend
    key = embedder_identity(embedder).split(":", 1)[1]
    assert embedder_identity(int8).endswith(key)


def test_a_short_run_gives_what_the_thread_pool_gives(
    onnx_embedder: OnnxEmbedder, onnx_cache: Path
) -> None:
    """One query runs on the one-thread session, a batch on the pool: the same vectors."""
    pool_only = OnnxEmbedder(bundled_model_path(), onnx_cache, threads=2)
    for text in TEXTS[:3]:  # each a few dozen tokens at most: the one-thread session
        assert np.allclose(onnx_embedder.embed([text]), pool_only.embed([text]), atol=1e-5)
    assert np.allclose(onnx_embedder.embed(TEXTS), pool_only.embed(TEXTS), atol=1e-5)


def test_one_session_from_several_threads(onnx_embedder: OnnxEmbedder) -> None:
    expected = onnx_embedder.embed(TEXTS)
    alone = [onnx_embedder.embed([t])[0] for t in TEXTS[:3]]
    results: dict[int, np.ndarray] = {}
    short: dict[int, list[np.ndarray]] = {}

    def work(i: int) -> None:
        results[i] = onnx_embedder.embed(TEXTS)
        short[i] = [onnx_embedder.embed([t])[0] for t in TEXTS[:3]]  # the one-thread session

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == len(short) == 4
    for vectors in results.values():
        assert np.allclose(vectors, expected, atol=1e-5)
    for found in short.values():
        assert np.allclose(found, alone, atol=1e-5)


def test_models_the_backend_cannot_run_are_refused(tmp_path: Path) -> None:
    with pytest.raises(OnnxExportError, match="local model folder"):
        make_embedder("onnx", model="sentence-transformers/all-mpnet-base-v2", cache_dir=tmp_path)
    cls_model = tmp_path / "cls-model"
    shutil.copytree(bundled_model_path(), cls_model)
    pooling = cls_model / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    config.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    pooling.write_text(json.dumps(config))
    with pytest.raises(OnnxExportError, match=r"1_Pooling/config.json.*mean pooling"):
        make_embedder("onnx", model=str(cls_model), cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # refused before anything was written
    with pytest.raises(ValueError, match="'tensorflow' is not a valid EmbeddingBackend"):
        make_embedder("tensorflow")
