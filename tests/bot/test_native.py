"""numpy's BLAS is kept to one thread beside the embedding model; torch's pool is not."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json
from bot.native import load_torch_first, one_blas_thread
load_torch_first()
import numpy
from threadpoolctl import threadpool_info
before = {i["internal_api"]: i["num_threads"] for i in threadpool_info()}
one_blas_thread()
after = {i["internal_api"]: i["num_threads"] for i in threadpool_info()}
print(json.dumps([before, after]))
"""


def test_one_blas_thread_limits_numpys_blas_and_leaves_torchs_pool() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    before, after = json.loads(out.stdout.strip().splitlines()[-1])
    assert after["openblas"] == 1
    assert after.get("openmp") == before.get("openmp")  # torch's threads as they were
