"""Export a local sentence-transformers model to ONNX, offline, once per model and variant.

The transformer is traced with PyTorch from the model folder (no hub), saved under a cache
folder keyed by a hash of the model's files, and optionally quantised to int8 weights
(dynamic quantisation of onnxruntime, one scale per channel). A second process that finds
the file uses it; two processes exporting at once each write a temporary file and the last
rename wins (the files are identical).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

EXPORT_FORMAT = "npo-onnx-3"  # change when the export below changes: old files are not reused
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
log = logging.getLogger(__name__)


class OnnxExportError(ValueError):
    """The model folder cannot be run by the ONNX backend (says which file and why)."""


def check_model_folder(model_dir: Path) -> dict[str, Any]:
    """The folder's sentence-transformers pipeline, if it is Transformer → mean pooling
    (→ Normalize): what :class:`retrieval.embeddings.OnnxEmbedder` computes."""
    if not model_dir.is_dir():
        raise OnnxExportError(
            f"{model_dir}: the ONNX backend needs a local model folder (a hub name cannot be "
            "exported offline); use the torch backend or give the folder's path"
        )
    for name in ("modules.json", "tokenizer.json", "config.json"):
        if not (model_dir / name).is_file():
            raise OnnxExportError(f"{model_dir / name}: missing (needed by the ONNX backend)")
    modules = json.loads((model_dir / "modules.json").read_text())
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    if kinds[:2] != ["Transformer", "Pooling"] or any(k != "Normalize" for k in kinds[2:]):
        raise OnnxExportError(
            f"{model_dir / 'modules.json'}: pipeline {kinds} is not Transformer, Pooling "
            "(, Normalize); the ONNX backend runs only that shape"
        )
    pooling_dir = model_dir / str(modules[1].get("path") or "1_Pooling")
    pooling = json.loads((pooling_dir / "config.json").read_text())
    modes = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v is True]
    if modes != ["pooling_mode_mean_tokens"]:
        raise OnnxExportError(
            f"{pooling_dir / 'config.json'}: pooling {modes}; the ONNX backend does mean pooling"
        )
    max_len = 512
    st_config = model_dir / "sentence_bert_config.json"
    if st_config.is_file():
        max_len = int(json.loads(st_config.read_text()).get("max_seq_length") or max_len)
    return {"max_seq_length": max_len, "dimension": int(pooling["word_embedding_dimension"])}


def model_key(model_dir: Path) -> str:
    """A hash of the files that decide the model's output (weights, config, tokenizer)."""
    digest = hashlib.sha256(EXPORT_FORMAT.encode())
    for path in sorted(model_dir.iterdir()):
        if path.is_file() and path.suffix in {".safetensors", ".bin", ".json", ".txt"}:
            digest.update(path.name.encode())
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def exported_model(model_dir: Path, cache_dir: Path, quantized: bool) -> Path:
    """The ONNX file of ``model_dir`` (int8 weights if ``quantized``), exported on first use."""
    check_model_folder(model_dir)
    folder = cache_dir / f"{model_dir.name}-{model_key(model_dir)}"
    fp32 = folder / "model.onnx"
    target = folder / "model.int8.onnx" if quantized else fp32
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    log.info("exporting the embedding model to ONNX (once) model=%s target=%s", model_dir, target)
    started = time.perf_counter()
    if not fp32.is_file():
        _atomic(fp32, lambda tmp: _export(model_dir, tmp))
    if quantized:
        _atomic(target, lambda tmp: _quantize(fp32, tmp))
    log.info(
        "embedding model exported target=%s seconds=%.1f", target, time.perf_counter() - started
    )
    return target


def _atomic(target: Path, write: Any) -> None:
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _export(model_dir: Path, out: Path) -> None:
    import torch
    from transformers import AutoModel

    # Eager attention traces to a plain masked softmax; the default (SDPA) traces to one
    # with an IsNaN/Where guard over every layer's scores, a third of int8 run time.
    model = AutoModel.from_pretrained(
        str(model_dir), local_files_only=True, attn_implementation="eager"
    ).eval()

    class LastHiddenState(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor,
        ) -> torch.Tensor:
            output = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return output.last_hidden_state  # type: ignore[no-any-return]

    example = torch.ones((2, 8), dtype=torch.int64)
    axes = {name: {0: "batch", 1: "tokens"} for name in (*_INPUTS, "last_hidden_state")}
    # The tracer warns about shape checks it freezes; the test of padded against single
    # inputs is what shows the export generalises.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LastHiddenState(model),
            (example, example, torch.zeros_like(example)),
            str(out),
            input_names=list(_INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,  # the TorchScript exporter needs no onnxscript
        )


def _quantize(fp32: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # One scale per output channel keeps the vectors close to float32's (lowest cosine over
    # corpus chunks 0.989, against 0.913 with one scale per tensor), and 7-bit weights keep
    # the u8 x s8 products of AVX2 (no VNNI) from saturating; it also ran fastest here.
    # The quantiser logs a line per tensor, and advice to pre-process the model, on the root
    # logger: noise in an operator's log. Its errors still pass.
    quiet = _BelowError()
    logging.getLogger().addFilter(quiet)
    try:
        quantize_dynamic(
            str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True
        )
    finally:
        logging.getLogger().removeFilter(quiet)


class _BelowError(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR
