"""The shared fakes live in ``testkit.fakes`` (the benchmarks use them too); this name
stays so existing test imports keep working."""

from testkit.fakes import FakeHit, FakeRetriever, ScriptedSPE, row_counts

__all__ = ["FakeHit", "FakeRetriever", "ScriptedSPE", "row_counts"]
