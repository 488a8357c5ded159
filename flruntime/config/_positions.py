"""Best-effort source positions for JSON and HOCON text.

The real parsers (``json``, ``pyhocon``) produce the values; this scanner only walks the text's
structure to remember the line and column where every node starts, so problems found later can
point at them. It never raises: on anything it does not understand it stops and returns what it
has. It also reports keys repeated within one object, which ``json`` silently collapses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from flruntime.problems import JsonPath

_TOKEN = re.compile(
    r"""
    (?P<nl>\n)
  | (?P<ws>[ \t\r\f\ufeff]+)
  | (?P<comment>(?:\#|//)[^\n]*)
  | (?P<triple>\"\"\"(?:.|\n)*?\"\"\"\"*)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<punct>\+=|[{}\[\],:=])
  | (?P<word>[^\s{}\[\],:=\#"]+(?:/(?!/)[^\s{}\[\],:=\#"]*)*)
    """,
    re.VERBOSE,
)


@dataclass
class Positions:
    """Where each node starts (1-based line and column) and which keys were repeated."""

    at: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)
    duplicates: list[tuple[JsonPath, int, int]] = field(default_factory=list)


@dataclass
class _Tok:
    kind: str
    text: str
    line: int
    col: int


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    line, line_start, pos = 1, 0, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:  # an unexpected character: keep what we have
            break
        kind = m.lastgroup or "ws"
        value = m.group()
        if kind not in ("ws", "comment"):
            toks.append(_Tok(kind, value, line, pos - line_start + 1))
        newlines = value.count("\n")
        if newlines:
            line += newlines
            line_start = pos + value.rindex("\n") + 1
        pos = m.end()
    return toks


class _Scanner:
    def __init__(self, toks: list[_Tok], split_dotted_keys: bool) -> None:
        self.toks = toks
        self.i = 0
        self.split = split_dotted_keys
        self.out = Positions()

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def skip_newlines(self) -> None:
        while (t := self.peek()) is not None and t.kind == "nl":
            self.i += 1

    def mark(self, path: JsonPath, tok: _Tok) -> None:
        self.out.at.setdefault(path, (tok.line, tok.col))

    def value(self, path: JsonPath) -> None:
        self.skip_newlines()
        tok = self.peek()
        if tok is None:
            return
        self.mark(path, tok)
        if tok.text == "{" and tok.kind == "punct":
            self.i += 1
            self.members(path, closer="}")
        elif tok.text == "[" and tok.kind == "punct":
            self.i += 1
            self.elements(path)
        else:  # a scalar, possibly HOCON value concatenation up to the end of the line
            while (t := self.peek()) is not None and t.kind != "nl" and t.text not in (",", "}", "]"):
                if t.text in ("{", "["):
                    self.value(path)
                else:
                    self.i += 1

    def key_parts(self, tok: _Tok) -> list[str]:
        if tok.kind == "string":
            return [tok.text[1:-1]]
        return tok.text.split(".") if self.split else [tok.text]

    def members(self, path: JsonPath, closer: str | None) -> None:
        seen: set[str] = set()
        while True:
            while (t := self.peek()) is not None and (t.kind == "nl" or t.text == ","):
                self.i += 1
            tok = self.peek()
            if tok is None or (tok.kind == "punct" and tok.text == closer):
                self.i += 1
                return
            if tok.kind not in ("string", "word"):
                return
            self.i += 1
            if tok.kind == "word" and tok.text == "include":  # HOCON include: skip the target
                self.value(path + ("<include>",))
                continue
            parts = self.key_parts(tok)
            for n in range(1, len(parts) + 1):
                self.mark(path + tuple(parts[:n]), tok)
            if parts[0] in seen and len(parts) == 1:
                self.out.duplicates.append((path + tuple(parts), tok.line, tok.col))
            seen.add(parts[0])
            sep = self.peek()
            if sep is not None and sep.kind == "punct" and sep.text in (":", "=", "+="):
                self.i += 1
            self.value(path + tuple(parts))

    def elements(self, path: JsonPath) -> None:
        index = 0
        while True:
            while (t := self.peek()) is not None and (t.kind == "nl" or t.text == ","):
                self.i += 1
            tok = self.peek()
            if tok is None:
                return
            if tok.kind == "punct" and tok.text == "]":
                self.i += 1
                return
            before = self.i
            self.value(path + (index,))
            index += 1
            if self.i == before:  # no progress: give up rather than loop
                return


def scan(text: str, *, hocon: bool) -> Positions:
    """Return the node positions of JSON (``hocon=False``) or HOCON text."""
    scanner = _Scanner(_tokenize(text), split_dotted_keys=hocon)
    scanner.skip_newlines()
    first = scanner.peek()
    if first is None:
        return scanner.out
    scanner.mark((), first)
    if first.kind == "punct" and first.text in ("{", "["):
        scanner.value(())
    else:  # HOCON: a root object without braces
        scanner.members((), closer=None)
    return scanner.out
