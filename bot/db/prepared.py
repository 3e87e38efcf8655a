"""The few statements every recommendation runs, compiled once per dialect and run on
the driver's cursor.

Through ``Connection.execute`` a Core statement pays, on every execution, for its cache
key (a walk of the whole statement tree), an execution context and a result object. On a
cache just swept (as after an embedding), the decision's four-subquery select took 136 µs
that way, 50 µs prepared, and 18 µs for the driver alone (``python -m bench.statements``);
a recommendation runs nine such statements. A ``Prepared`` statement is compiled by
SQLAlchemy's own compiler for the connection's dialect, binds its values through its
columns' own type processors (a datetime is stored exactly as the ORM stores it) and
converts results the same way; it runs inside the transaction the ``Connection`` holds,
beginning it as ``Connection.execute`` would; cursor events fire and errors go through
SQLAlchemy's own handling (its exception classes, invalidation of a lost connection).
What it does not do: echo logging, expanding ``IN`` lists, Python-side column defaults
(compiling refuses the last two). Everything off the hot paths stays plain SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert, UpdateBase
from sqlalchemy.sql.expression import Executable
from sqlalchemy.sql.selectable import SelectBase

Processor = Callable[[Any], Any]


@dataclass(slots=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # bind names, in the driver's order when it is positional
    positional: bool
    fixed: dict[str, Any]  # values the statement carries itself (a LIMIT 1, a literal)
    binds: tuple[tuple[str, Processor], ...]  # the bind names whose type converts them
    types: tuple[Any, ...]  # the result columns' types
    # The result columns whose type converts them; known at the first result (a
    # processor may depend on the driver's type code).
    results: tuple[tuple[int, Processor], ...] | None = None


class Prepared:
    """One Core statement, compiled on first use for each dialect it meets.

    ``insert(table)`` is compiled for the columns its first execution gives (and again
    for another set of columns); a column the caller leaves out must have no Python-side
    default, because that default would not run here: compiling says so.
    """

    def __init__(self, statement: Executable, name: str = "") -> None:
        self.statement = statement
        self.name = name or type(statement).__name__
        self._by_columns = isinstance(statement, Insert)  # compiled per set of columns
        self._compiled: dict[tuple[str, frozenset[str] | None], _Compiled] = {}

    def compiled(self, dialect: Dialect, keys: frozenset[str] | None = None) -> _Compiled:
        driver = f"{dialect.name}+{dialect.driver}:{dialect.paramstyle}"
        key = (driver, keys if self._by_columns else None)
        found = self._compiled.get(key)
        if found is None:  # a race compiles twice and keeps one: the same result
            found = self._compiled[key] = _compile(self.statement, dialect, key[1], self.name)
        return found

    def all(
        self, conn: Connection, params: Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Every row, converted by the result columns' types."""
        compiled, cursor = self._run(conn, params or {})
        try:
            rows = cursor.fetchall()
            if compiled.results is None:
                compiled.results = _result_processors(compiled.types, conn.dialect, cursor)
        finally:
            cursor.close()
        if not compiled.results:
            return [tuple(row) for row in rows]
        out = []
        for row in rows:
            values = list(row)
            for i, convert in compiled.results:
                values[i] = convert(values[i])
            out.append(tuple(values))
        return out

    def first(
        self, conn: Connection, params: Mapping[str, Any] | None = None
    ) -> tuple[Any, ...] | None:
        rows = self.all(conn, params)
        return rows[0] if rows else None

    def scalars(self, conn: Connection, params: Mapping[str, Any] | None = None) -> list[Any]:
        return [row[0] for row in self.all(conn, params)]

    def run(self, conn: Connection, params: Mapping[str, Any] | None = None) -> int:
        """Execute a statement that returns no rows; the driver's row count."""
        _, cursor = self._run(conn, params or {})
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def _run(self, conn: Connection, params: Mapping[str, Any]) -> tuple[_Compiled, Any]:
        compiled = self.compiled(conn.dialect, frozenset(params) if self._by_columns else None)
        values = dict(compiled.fixed)
        values.update(params)
        missing = [n for n in compiled.names if n not in values]
        if missing:
            raise TypeError(f"{self.name}: no value for parameter {missing[0]!r}")
        if not conn.in_transaction():
            conn.begin()  # what Connection.execute does first: one snapshot for the block
        sql: str = compiled.sql
        args: Any = None
        cursor: Any = None
        try:
            for name, convert in compiled.binds:
                values[name] = convert(values[name])
            if compiled.positional:
                args = tuple(values[n] for n in compiled.names)
            else:
                args = {n: values[n] for n in compiled.names}
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            # Cursor events still fire, with no execution context (there is none); a
            # listener registered with retval=True may rewrite the statement, as usual.
            for listener in conn.dispatch.before_cursor_execute:
                sql, args = listener(conn, cursor, sql, args, None, False)
            cursor.execute(sql, args)
            for after in conn.dispatch.after_cursor_execute:
                after(conn, cursor, sql, args, None, False)
        except BaseException as error:
            # SQLAlchemy's own handling: its exception classes, handle_error listeners, a
            # lost or interrupted connection invalidated (and the pool on a disconnect).
            conn._handle_dbapi_exception(error, sql, args, cursor, None)
        return compiled, cursor


def _compile(
    statement: Executable, dialect: Dialect, keys: frozenset[str] | None, name: str
) -> _Compiled:
    columns = sorted(keys) if keys is not None else None
    element = cast(ClauseElement, statement)
    compiled = cast(SQLCompiler, element.compile(dialect=dialect, column_keys=columns))
    defaults = [c.key for c in [*compiled.insert_prefetch, *compiled.update_prefetch]]
    if defaults:
        raise ValueError(
            f"{name}: columns {sorted(defaults)} have Python-side defaults that a prepared "
            "statement does not apply; give them a value"
        )
    unsupported = {
        "escaped bind names": compiled.escaped_bind_names,
        "expanding or post-compile parameters": compiled.post_compile_params,
        "literal-execute parameters": compiled.literal_execute_params,
    }
    for what, found in unsupported.items():
        if found:
            raise ValueError(f"{name}: {what} are not supported in a prepared statement")
    positional = bool(compiled.positional)
    if positional:
        names = tuple(compiled.positiontup or ())
    else:
        names = tuple(dict.fromkeys(compiled.bind_names.values()))
    binds = {n: compiled.binds[n] for n in names}
    fixed = {
        n: bind.value
        for n, bind in binds.items()
        if not bind.required and bind.callable is None and (keys is None or n not in keys)
    }
    converts = []
    for n, bind in binds.items():
        convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if convert is not None:
            converts.append((n, convert))
    types = tuple(_result_types(statement))
    return _Compiled(compiled.string, names, positional, fixed, tuple(converts), types)


def _result_processors(
    types: Sequence[Any], dialect: Dialect, cursor: Any
) -> tuple[tuple[int, Processor], ...]:
    codes = [d[1] for d in cursor.description or ()]
    out = []
    for i, (column_type, code) in enumerate(zip(types, codes, strict=False)):
        convert = column_type.dialect_impl(dialect).result_processor(dialect, code)
        if convert is not None:
            out.append((i, convert))
    return tuple(out)


def _result_types(statement: Executable) -> Sequence[Any]:
    if isinstance(statement, SelectBase):
        return [c.type for c in statement.selected_columns]
    if isinstance(statement, UpdateBase):
        return [d["type"] for d in statement.returning_column_descriptions]
    return []
