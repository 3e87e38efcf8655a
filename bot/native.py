"""Load order of native libraries.

regopy's library exports its own ``operator new``/``operator delete``; when torch is
imported after it, the process aborts with "double free or corruption". Loading torch
first is safe, so every place that builds the Rego SPE calls ``load_torch_first``.
"""

from __future__ import annotations

import importlib.util
import sys


def load_torch_first() -> None:
    if "regopy" in sys.modules or importlib.util.find_spec("torch") is None:
        return
    import torch  # noqa: F401


def one_blas_thread() -> None:
    """numpy's BLAS (OpenBLAS) on one thread for the rest of the process.

    Its idle threads spin for a while after each call, and on two cores they take the
    cores the embedding model's pool needs next: on this project's 2-core machine one
    query embedding took 64 ms instead of 27 when a 4,253 × 384 product ran between
    embeddings. numpy's products here are that size or smaller, where a second thread
    saves a fraction of a millisecond. torch's own BLAS is linked into torch and keeps
    its threads.
    """
    from threadpoolctl import ThreadpoolController

    ThreadpoolController().select(internal_api="openblas").limit(limits=1)
