"""Small fakes we own, shared by the tests and the benchmarks (installed with the package,
so ``python -m bench`` runs without a checkout's ``tests/``)."""
