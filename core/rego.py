"""The default SPE backend: Rego policies evaluated in-process with regopy.

Convention for policy modules: each lives in a package ``npo.policies.<name>`` and may
define the sets ``deny``, ``defer`` and ``needs_approval`` whose members are messages
(strings). The strictest non-empty set decides the verdict. Helper packages may live
elsewhere (``npo.lib.*``). Modules are handed over as text (the caller reads the files),
so this module does no I/O.

The modules are compiled into a bundle: a query then costs about 0.4 ms here, against
about 3.5 ms for an ad-hoc query that recompiles the plan.

Threads: a regopy interpreter holds the input of the query in progress, so one interpreter
must never serve two threads at once (a shared one returned other requests' verdicts and
could crash). ``RegoPolicyEngine`` lends each evaluation an interpreter from a small pool.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from core.policy import Action, PolicyError, PolicyVerdict, RuleHit, Verdict, strictest
from core.scenario import Scenario

_QUERY = "data.npo.policies"
_OUTCOMES = {  # strictest first
    "deny": Verdict.DENY,
    "defer": Verdict.DEFER,
    "needs_approval": Verdict.NEEDS_APPROVAL,
}
_ERROR_AT = re.compile(r"\(error \d+:(?P<name>[^|\s]+)\|(?P<offset>\d+)\|\d+")
_ERROR_MSG = re.compile(r"\(errormsg \d+:(?P<msg>[^)]*)\)")


def _line_col(source: str, offset: int) -> tuple[int, int]:
    before = source[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


def _describe(error: str, sources: Mapping[str, str]) -> str:
    """Turn regopy's S-expression error into ``file:line:col: message``."""
    msg_match = _ERROR_MSG.search(error)
    msg = msg_match.group("msg") if msg_match else error.strip().splitlines()[0]
    at = _ERROR_AT.search(error)
    if at and at.group("name") in sources:
        line, col = _line_col(sources[at.group("name")], int(at.group("offset")))
        return f"{at.group('name')}:{line}:{col}: {msg}"
    return msg


def _regopy() -> Any:
    """regopy, imported on first use: its native library replaces ``operator new``, and a
    process that loads torch after it aborts (double free), so the composition root must
    be able to load torch first (see ``bot/native.py``)."""
    import regopy

    return regopy


def _interpreter() -> Any:
    rego = _regopy().Interpreter()
    rego.log_level = 0  # errors are raised to us, not printed on stdout
    return rego


def _raw_query(rego: Any, query: str) -> str:
    """The output text even when it is an error (regopy's ``query`` fails to parse those)."""
    from regopy.rego_shared import rego_output_string, rego_query

    return str(rego_output_string(rego_query(rego._impl, query)))


def _probe_input() -> dict[str, object]:
    return policy_input(Scenario(component="probe", fault_type="probe"), Action(name="probe"))


def policy_input(scenario: Scenario, action: Action) -> dict[str, object]:
    return {"scenario": scenario.as_policy_input(), "action": action.as_policy_input()}


def verdict_of(
    raw: Mapping[str, Mapping[str, list[str]]], policies: tuple[str, ...]
) -> PolicyVerdict:
    """The verdict from the query's output: every rule that fired, the strictest wins."""
    hits = [
        RuleHit(policy, verdict, str(message))
        for outcome, verdict in _OUTCOMES.items()
        for policy in sorted(raw)
        if isinstance(raw[policy], dict)
        for message in sorted(raw[policy].get(outcome, []))
    ]
    return PolicyVerdict(strictest([h.verdict for h in hits]), tuple(hits), policies)


class CompiledPolicies:
    """One interpreter and the bundle compiled on it. Not thread-safe: one thread at a time
    (``set_input`` and the query that reads it are two calls on shared native state)."""

    def __init__(self, rego: Any, bundle: Any) -> None:
        self._rego = rego
        self._bundle = bundle

    def query(self, document: dict[str, object]) -> dict[str, dict[str, list[str]]]:
        self._rego.set_input(document)
        try:
            out = self._rego.query_bundle(self._bundle)
        except (_regopy().RegoError, ValueError) as exc:
            raise PolicyError(f"policy evaluation failed: {exc}") from exc
        if not out.results or not out.results[0].expressions:
            return {}
        value = out.results[0].expressions[0]
        if not isinstance(value, dict):
            raise PolicyError(f"{_QUERY} must be an object of packages, got {json.dumps(value)}")
        return value


def _load(modules: Mapping[str, str]) -> Any:
    rego = _interpreter()
    for name, source in modules.items():
        try:
            rego.add_module(name, source)
        except _regopy().RegoError as exc:
            raise PolicyError(_describe(str(exc), modules)) from exc
    return rego


def _build(rego: Any, modules: Mapping[str, str]) -> CompiledPolicies:
    try:
        return CompiledPolicies(rego, rego.build(_QUERY))
    except _regopy().RegoError as exc:
        raise PolicyError(_describe(str(exc), modules)) from exc


def compile_policies(modules: Mapping[str, str]) -> CompiledPolicies:
    """A fresh interpreter with the modules compiled, without the engine's checks: for
    modules that ``RegoPolicyEngine`` has already accepted."""
    return _build(_load(modules), modules)


def _check_semantics(rego: Any, modules: Mapping[str, str]) -> None:
    """Unknown functions and type errors only show when evaluating: probe once."""
    rego.set_input(_probe_input())
    error = _raw_query(rego, _QUERY)
    if not error.startswith("(error"):
        return
    for name in modules:  # find the file to blame
        single = _interpreter()
        single.add_module(name, modules[name])
        single.set_input(_probe_input())
        alone = _raw_query(single, _QUERY)
        if alone.startswith("(error"):
            raise PolicyError(f"{name}: {_describe(alone, modules)}")
    raise PolicyError(f"policies fail to evaluate together: {_describe(error, modules)}")


class _InterpreterPool:
    """Lends each caller an idle interpreter, building another (lazily, from the same modules)
    only when every existing one is busy, up to ``limit``; past that, callers wait."""

    def __init__(
        self, build: Callable[[], CompiledPolicies], first: CompiledPolicies, limit: int
    ) -> None:
        self._build = build
        self._idle = [first]
        self._size = 1
        self._limit = limit
        self._changed = threading.Condition()

    @property
    def size(self) -> int:
        """How many interpreters exist (idle or lent)."""
        return self._size

    @contextmanager
    def borrowed(self) -> Iterator[CompiledPolicies]:
        with self._changed:
            while not self._idle and self._size >= self._limit:
                self._changed.wait()
            compiled = self._idle.pop() if self._idle else None
            if compiled is None:
                self._size += 1  # reserve the slot before building outside the lock
        if compiled is None:
            try:
                compiled = self._build()
            except BaseException:
                with self._changed:
                    self._size -= 1
                    self._changed.notify()
                raise
        try:
            yield compiled
        finally:
            with self._changed:
                self._idle.append(compiled)  # last in, first out: the warmest is reused
                self._changed.notify()


# Built-ins whose answer can change between two calls with the same input: a module that
# calls one makes the engine's verdicts uncacheable.
_IMPURE = re.compile(
    r"\b(time\.now_ns|http\.send|rand\.intn|uuid\.rfc4122|net\.lookup_ip_addr|opa\.runtime)\s*\("
)


class _VerdictCache:
    """The newest ``size`` verdicts by policy input (least recently used out first); a
    size of 0 caches nothing. Thread-safe: one lock around the dictionary."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._verdicts: OrderedDict[str, PolicyVerdict] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> PolicyVerdict | None:
        if not self._size:
            return None
        with self._lock:
            verdict = self._verdicts.get(key)
            if verdict is not None:
                self._verdicts.move_to_end(key)
            return verdict

    def put(self, key: str, verdict: PolicyVerdict) -> None:
        if not self._size:
            return
        with self._lock:
            self._verdicts[key] = verdict
            self._verdicts.move_to_end(key)
            while len(self._verdicts) > self._size:
                self._verdicts.popitem(last=False)


class RegoPolicyEngine:
    """Loads and checks the modules at construction; ``evaluate`` runs the compiled bundle.

    Safe to call from any number of threads. Each evaluation borrows an interpreter from a
    pool (built on demand from the same module texts, at most ``max_interpreters``, about
    2 MB each), so no native object is ever used by two threads at once, and the native
    query (regopy's ctypes calls release the GIL) runs on as many cores as there are callers.

    Why a pool: measured with ``python -m bench.spe_threads`` (2,000 mixed evaluations a
    run, 5 interleaved rounds, median over rounds, quiet 2-core machine): from 4 threads
    the pool did 898 evaluations/s and per-thread interpreters 925/s against 611/s behind
    one lock (1 thread: 710–761/s for all three); with a new thread per request (as
    ``ThreadingMixIn`` servers do) per-thread interpreters are compiled again for every
    request (~18 ms): 376/s against 771/s pooled. A pool keeps the parallelism of per-thread
    interpreters without tying them to threads that may live for one request.

    Verdicts are cached by their policy input (``cache_size`` of them, the newest): a
    decision asks one question per candidate, each ~1.3 ms, and the same device in the
    same situation asks the same ones again. A verdict depends on nothing but the input and
    the modules (fixed for the engine's life), unless a module calls a built-in that reads
    the clock, the network or a random source: then nothing is cached.
    """

    def __init__(
        self, modules: Mapping[str, str], max_interpreters: int = 8, cache_size: int = 4096
    ) -> None:
        if not modules:
            raise PolicyError("no policy modules given: at least one .rego file is required")
        if max_interpreters < 1:
            raise ValueError(f"max_interpreters: {max_interpreters} must be >= 1")
        if cache_size < 0:
            raise ValueError(f"cache_size: {cache_size} must be >= 0")
        texts = dict(modules)  # later interpreters compile exactly what was checked
        rego = _load(texts)
        _check_semantics(rego, texts)
        first = _build(rego, texts)
        self.policies = tuple(sorted(first.query(_probe_input())))
        if not self.policies:
            raise PolicyError(f"no module defines a package under {_QUERY}")
        self._pool = _InterpreterPool(lambda: compile_policies(texts), first, max_interpreters)
        pure = not any(_IMPURE.search(source) for source in texts.values())
        self._cache = _VerdictCache(cache_size if pure else 0)

    @property
    def interpreters(self) -> int:
        """How many interpreters the pool holds so far (at most the peak concurrency)."""
        return self._pool.size

    def evaluate(self, scenario: Scenario, action: Action) -> PolicyVerdict:
        document = policy_input(scenario, action)
        key = json.dumps(document, sort_keys=True)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        with self._pool.borrowed() as compiled:
            raw = compiled.query(document)
        verdict = verdict_of(raw, self.policies)
        self._cache.put(key, verdict)
        return verdict
