"""One hot statement through ``Connection.execute`` against the same statement prepared
(``bot.db.prepared``), on a migrated SQLite database.

Each timing is taken hot (the statement run again at once) and cold (just after a sweep
over 32 MB of memory, as after an embedding: the state of the caches a recommendation's
reads meet). Repetitions interleave the two ways; each figure is the median of the
repetitions' medians with a 95 % bootstrap interval. The floor is the driver alone: the
compiled SQL on a raw cursor.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.stats import median_ci
from bot.db.engine import make_engine, read_only
from bot.db.migrate import upgrade
from bot.db.recommendation_rows import DECISION_SCALARS, decision_scalars

_PARAMS = {"id": "Ev-missing", "op": "U1"}


def _median_us(run: Callable[[], object], sweep: Callable[[], object] | None, n: int) -> float:
    times = []
    for _ in range(n):
        if sweep is not None:
            sweep()
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1e6)
    return float(np.median(times))


def run(repeats: int = 5, per_repeat: int = 300) -> dict[str, Any]:
    prepared = DECISION_SCALARS
    memory = np.ones(4_000_000)  # 32 MB, more than this machine's L2 and most of L3
    with tempfile.TemporaryDirectory(prefix="npo-bench-") as tmp:
        url = f"sqlite:///{tmp}/npo.db"
        upgrade(url)
        engine = read_only(make_engine(url))
        with engine.connect() as conn:
            sql = prepared.compiled(conn.dialect)
            raw = conn.connection.dbapi_connection
            assert raw is not None
            args = tuple({**sql.fixed, **_PARAMS}[n] for n in sql.names)

            def core() -> object:
                return conn.execute(prepared.statement, _PARAMS).one()

            def fast() -> object:
                return decision_scalars(conn, _PARAMS["id"], _PARAMS["op"])

            def driver() -> object:
                cursor = raw.cursor()
                cursor.execute(sql.sql, args)
                row = cursor.fetchone()
                cursor.close()
                return row

            ways = {"core": core, "prepared": fast, "driver": driver}
            figures: dict[str, dict[str, list[float]]] = {
                way: {"hot": [], "cold": []} for way in ways
            }
            order = list(ways)
            for rep in range(repeats):
                for way in order if rep % 2 == 0 else order[::-1]:
                    figures[way]["hot"].append(_median_us(ways[way], None, per_repeat))
                    figures[way]["cold"].append(_median_us(ways[way], memory.sum, per_repeat))
        engine.dispose()
    out: dict[str, Any] = {}
    for way, by_state in figures.items():
        for state, values in by_state.items():
            out.update(median_ci(f"statement_{way}_{state}_us", values))
    ratios = [
        c / p for c, p in zip(figures["core"]["cold"], figures["prepared"]["cold"], strict=True)
    ]
    out.update(median_ci("statement_core_over_prepared_cold", ratios))
    return out


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key} = {value}")
