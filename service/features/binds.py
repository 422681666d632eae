"""Bound parameters for generated SQL: every client value becomes ``CAST(:pN AS type)``.

The explicit cast gives the prepared statement a definite type per parameter, so a value
never changes what the SQL means and PostgreSQL never has to guess."""

from __future__ import annotations

from typing import Any


class Binds:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def add(self, value: Any, sql_type: str) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f"CAST(:{name} AS {sql_type})"
