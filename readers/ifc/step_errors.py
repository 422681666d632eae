"""Where an IFC STEP file is damaged, for an error message an operator can act on.

ifcopenshell refuses a malformed file with "Syntax error during parse, check logs" (or an
OverflowError for an instance number out of range) and writes the offending token and its
byte offset only to its log. :func:`locate_parse_error` reads that log; when it names no
offset, a scan of the DATA section finds the first statement that is not
``#id = KEYWORD(...);``. Either way the message gives the line, the entity and what to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ADVICE = ("The file is damaged or was not written as valid IFC: export it again from the "
          "authoring tool (and check it with an IFC validator), and make sure it was not "
          "edited, re-encoded or cut short on the way.")

# "[error] [time] token x35107 at offset 1095690 invalid instance name"
_LOG_TOKEN = re.compile(r"token (?P<token>.*?) at offset (?P<offset>\d+) (?P<what>[^\n\[]*)")
_LOG_OFFSET = re.compile(r"\] (?P<what>[^\[\n]*?) at offset (?P<offset>\d+)")
_INSTANCE = re.compile(rb"\s*#(\d+)\s*=")

# STEP (ISO 10303-21) tokens of an entity's parameters; anything else is malformed.
_TOKENS = re.compile(rb"""
    (?P<space>\s+|/\*.*?\*/)
  | (?P<string>'(?:[^']|'')*')
  | (?P<binary>"[0-9A-Fa-f]*")
  | (?P<enum>\.[A-Za-z_][A-Za-z0-9_]*\.)
  | (?P<ref>\#\d+)
  | (?P<number>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_-]*)
  | (?P<punct>[(),$*=;])
""", re.X | re.S)


@dataclass(frozen=True)
class ParseErrorLocation:
    offset: int
    line: int
    entity: str | None  # "#35107"
    what: str  # what is wrong there
    text: str  # the start of the offending line

    def where(self) -> str:
        return f"line {self.line}" + (f", entity {self.entity}" if self.entity else "")

    def message(self) -> str:
        return (f"the IFC file cannot be parsed: {self.where()}: {self.what} (the line reads "
                f"{self.text!r}). {ADVICE}")


def _line_at(data: bytes, offset: int) -> tuple[int, str]:
    offset = min(max(offset, 0), len(data))
    start = data.rfind(b"\n", 0, offset) + 1
    end = data.find(b"\n", offset)
    text = data[start:end if end >= 0 else len(data)].decode("latin-1").strip()
    return data.count(b"\n", 0, offset) + 1, text[:160]


def _entity_at(data: bytes, offset: int) -> str | None:
    """The instance name of the statement that holds ``offset`` (None when the statement
    does not start with a well-formed ``#id =``, e.g. when that is what is damaged)."""
    low = max(0, offset - 1_000_000)
    end = data.rfind(b";", low, offset)
    m = _INSTANCE.match(data, end + 1 if end >= 0 else low)
    return f"#{int(m.group(1))}" if m else None


def _located(data: bytes, offset: int, what: str) -> ParseErrorLocation:
    line, text = _line_at(data, offset)
    return ParseErrorLocation(offset, line, _entity_at(data, offset), what, text)


# A whole well-formed statement in one match (possessive: no backtracking on damage); its
# parentheses are counted apart. Statements it does not match go through the token scanner.
_STATEMENT = re.compile(rb"""
    \s*\#\d+\s*=\s*(?:[A-Za-z_][A-Za-z0-9_]*\s*)?\(
    (?:\s+|'(?:[^']|'')*+'|"[0-9A-Fa-f]*"|\.[A-Za-z_][A-Za-z0-9_]*\.|\#\d+
      |[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[A-Za-z_][A-Za-z0-9_-]*|[(),$*])*+
    \s*;
""", re.X)
_STRING = re.compile(rb"'(?:[^']|'')*'")


def _balanced(statement: bytes) -> bool:
    bare = _STRING.sub(b"", statement)
    return bare.count(b"(") == bare.count(b")") and bare.rstrip()[-2:-1] == b")"


def scan_data_section(data: bytes) -> ParseErrorLocation | None:
    """The first malformed statement of the DATA section, or None when every statement is
    ``#id = KEYWORD(...);`` made of STEP tokens with balanced parentheses."""
    start = re.search(rb"(?m)^\s*DATA\s*;", data)
    if start is None:
        return _located(data, 0, "no DATA section")
    pos = start.end()
    while True:
        m = _STATEMENT.match(data, pos)
        if m and _balanced(m.group()):
            pos = m.end()
            continue
        if re.match(rb"\s*ENDSEC\s*;", data[pos:pos + 64]):
            return None
        pos, found = _scan_statement(data, pos)
        if found is not None:
            return found


def _scan_statement(data: bytes, pos: int) -> tuple[int, ParseErrorLocation | None]:
    """Token by token through one statement from ``pos``: where it ends, or what is wrong."""
    state = "start"  # start -> id -> eq -> keyword -> params (depth > 0) -> end
    depth = 0
    statement = pos
    for m in _TOKENS.finditer(data, pos):
        if m.start() != pos:
            return pos, _located(data, pos, f"unexpected character {data[pos:pos + 1]!r}")
        pos = m.end()
        kind = m.lastgroup
        token = m.group()
        if kind == "space":
            continue
        if state == "start":
            if kind == "string":
                return pos, _located(data, m.start(), "a quote (') that is not closed where "
                                                      "it should be, or text between statements")
            if kind != "ref":
                return pos, _located(data, m.start(), f"a statement starts with {_show(token)} "
                                                      "instead of an instance name #number")
            statement, state = m.start(), "id"
        elif state == "id":
            if token != b"=":
                return pos, _located(data, m.start(), f"{_show(token)} where '=' belongs")
            state = "eq"
        elif state == "eq":
            if token == b"(":  # a complex instance: #1=(A(...)B(...));
                depth, state = 1, "params"
            elif kind != "word":
                return pos, _located(data, m.start(), f"{_show(token)} where the entity type "
                                                      "belongs")
            else:
                state = "keyword"
        elif state == "keyword":
            if token != b"(":
                return pos, _located(data, m.start(), f"{_show(token)} where '(' belongs")
            depth, state = 1, "params"
        elif state == "params":
            if token == b"(":
                depth += 1
            elif token == b")":
                depth -= 1
                if depth == 0:
                    state = "end"
            elif token in (b";", b"="):
                return pos, _located(data, statement, "the statement is not closed: "
                                                      f"{_show(token)} inside its parentheses "
                                                      "(a missing ')' or a quote not closed)")
        elif state == "end":
            if token != b";":
                return pos, _located(data, m.start(), f"{_show(token)} after the statement's "
                                                      "closing ')' where ';' belongs")
            return pos, None
    if pos < len(data):
        return pos, _located(data, pos, f"unexpected character {data[pos:pos + 1]!r}")
    return pos, _located(data, statement, "the file ends inside a statement, without ENDSEC;")


def _show(token: bytes) -> str:
    return repr(token[:40].decode("latin-1"))


def locate_parse_error(path: Path, log: str, *, scan_first: bool = False
                       ) -> ParseErrorLocation | None:
    """Where the file is damaged: ifcopenshell's own token and offset from ``log`` when it
    names one, else the first malformed statement of the file, else the first offset the
    log names. ``scan_first``: the file's first malformed statement before the log (for a
    file ifcopenshell opened, whose log only names the consequences, such as references
    to entities it dropped)."""
    data = path.read_bytes()
    if scan_first:
        found = scan_data_section(data)
        if found is not None:
            return found
    m = _LOG_TOKEN.search(log)
    if m:
        what = m.group("what").strip() or "invalid token"
        what = what.replace("invalid valid token", "invalid token")
        return _located(data, int(m.group("offset")),
                        f"{what} {m.group('token')[:40]!r}")
    found = scan_data_section(data)
    if found is not None:
        return found
    m = _LOG_OFFSET.search(log)
    if m:
        return _located(data, int(m.group("offset")), m.group("what").strip())
    return None
