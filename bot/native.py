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
