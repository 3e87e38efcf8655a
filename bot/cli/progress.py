"""Progress bars on a terminal (stderr); silent when output is not a terminal."""

from __future__ import annotations

import sys
from typing import Any


class ProgressBar:
    def __init__(self, total: int, desc: str, unit: str) -> None:
        self._bar: Any = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total or None, desc=desc, unit=unit, file=sys.stderr)

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def set_progress(self, done: int, total: int) -> None:
        if self._bar is not None:
            self._bar.total = total
            self._bar.n = done
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def progress_bar(total: int, desc: str, unit: str) -> ProgressBar:
    return ProgressBar(total, desc, unit)
