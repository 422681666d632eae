"""Bound parameters for generated SQL: every client value becomes ``CAST(:pN AS type)``.

The explicit cast gives the prepared statement a definite type per parameter, so a value
never changes what the SQL means and PostgreSQL never has to guess.

A domain that keeps its own filters as SQLAlchemy Core hands them over as a statement
(:meth:`Binds.statement`): compiled as SQLAlchemy would run it on asyncpg, with its values
bound here, so the generated query and the domain's statement run as one."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import ClauseElement
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

_DIALECT = asyncpg_dialect()
_POSITION = re.compile(r"\$(\d+)")


class Binds:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def add(self, value: Any, sql_type: str) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f"CAST(:{name} AS {sql_type})"

    def statement(self, clause: ClauseElement) -> str:
        """The SQL of a Core statement, its parameters added here. SQLAlchemy writes the
        cast of each one (``$1::BIGINT``) and converts the values as it would before
        running it (a dict for a JSONB column becomes its JSON text)."""
        compiled = clause.compile(dialect=_DIALECT)
        state = compiled.construct_expanded_state()
        names = []
        for key in state.positiontup or ():
            value = state.parameters[key]
            # the state has the processors of expanded parameters (IN lists) only
            bind = compiled.binds.get(key)
            process = (state.processors.get(key) if bind is None else
                       bind.type.dialect_impl(_DIALECT).bind_processor(_DIALECT))
            name = f"p{len(self.values)}"
            self.values[name] = process(value) if process is not None else value
            names.append(f"(:{name})")
        # values never go into the text, so its only $n are the parameters (a statement
        # that spells "$1" or ":name" in a text() or literal_column() of its own would be
        # misread here or by text())
        return _POSITION.sub(lambda m: names[int(m.group(1)) - 1], state.statement)
