""".env text as python-dotenv reads it, and assignments written so that it reads them back.

Pure functions only: no file is opened here. The parser is python-dotenv's own
(``dotenv.parser.parse_stream``), so secretsync sees exactly the keys and values an application
that loads its ``.env`` with python-dotenv sees. The parser returns the exact text of every
statement; joining those texts gives the file back byte for byte, which is what lets secretsync
change one statement and leave every other byte alone.
"""

import io
import re
from dataclasses import dataclass
from typing import Iterator

from dotenv.parser import parse_stream

from secretsync.errors import JobError

BOM = "\ufeff"

# python-dotenv counts a line break the same way: CRLF, LF or a lone CR.
_NEWLINE = re.compile(r"\r\n|\n|\r")
_LEADING_SPACE = re.compile(r"\s*")
_LINE_END = re.compile(r"(?:\r\n|\n|\r)\Z")
# The part of an assignment before its value: `export `, the key, and `=` with its spacing,
# mirroring the parser's own patterns so that an in-place rewrite keeps the admin's spelling.
_ASSIGNMENT_HEAD = re.compile(
    r"(export[^\S\r\n]+)?('[^']+'|[^=#\s]+)([^\S\r\n]*=[^\S\r\n]*)?"
)
# Values written without quotes when they consist only of these characters: what an admin
# would write by hand for tokens, URLs and ids.
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_.:/+=@%,~^-]*")
_PLAIN_KEY = re.compile(r"[^=#\s'\"]+")


@dataclass(frozen=True)
class Statement:
    """One statement of a .env file as python-dotenv parsed it.

    ``text`` is the exact source text, including the blank lines the parser joins to the front
    of a statement and its line break. ``key`` is None for comments, blank runs and statements
    the parser could not read (``error`` is then True). ``line`` is the line of the key, or of
    the start of the text when there is no key.
    """

    key: str | None
    value: str | None
    text: str
    line: int
    error: bool

    def meaning(self) -> tuple:
        """What an application reading the file sees of this statement."""
        return (self.key, self.value, self.error)


@dataclass(frozen=True)
class Document:
    """A whole .env file: its statements, whether it starts with a BOM, its line break."""

    statements: tuple[Statement, ...]
    bom: bool = False

    @property
    def newline(self) -> str:
        """The line break appended lines get: the file's first one, or LF for a file with none."""
        for statement in self.statements:
            match = _NEWLINE.search(statement.text)
            if match:
                return "\r\n" if match.group() == "\r\n" else "\n"
        return "\n"

    def text(self) -> str:
        """The file's text, byte for byte what was parsed (BOM included)."""
        return (BOM if self.bom else "") + "".join(s.text for s in self.statements)

    def bindings(self) -> Iterator[Statement]:
        """The statements that bind a key, in file order."""
        return (s for s in self.statements if s.key is not None)

    def values(self) -> dict[str, str | None]:
        """Key to value, the last binding of a key winning, as python-dotenv reads the file."""
        return {s.key: s.value for s in self.bindings()}

    def lines_by_key(self) -> dict[str, list[int]]:
        """Key to the line numbers of all its bindings."""
        lines: dict[str, list[int]] = {}
        for statement in self.bindings():
            lines.setdefault(statement.key, []).append(statement.line)
        return lines

    def duplicates(self) -> dict[str, list[int]]:
        """Keys bound more than once, with their line numbers."""
        return {key: lines for key, lines in self.lines_by_key().items() if len(lines) > 1}

    def error_lines(self) -> list[int]:
        """Line numbers of the statements python-dotenv cannot parse."""
        return [s.line for s in self.statements if s.error]


def decode(data: bytes, path: str) -> str:
    """Return the text of a .env file's bytes, refusing what no environment can carry.

    A NUL byte cannot be part of an environment variable and invalid UTF-8 is not text
    python-dotenv reads; both are reported by line number, never by showing the bytes.
    """
    nul = data.find(b"\0")
    if nul >= 0:
        raise JobError(f"{path}: line {_line_at(data, nul)}: contains a NUL byte")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise JobError(
            f"{path}: line {_line_at(data, error.start)}: not valid UTF-8"
        ) from None


def _line_at(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def parse(text: str) -> Document:
    """Parse .env text into a Document; a leading UTF-8 BOM is kept aside, not made a key."""
    bom = text.startswith(BOM)
    if bom:
        text = text[len(BOM):]
    return Document(tuple(_statements(text)), bom)


def _statements(text: str) -> Iterator[Statement]:
    for binding in parse_stream(io.StringIO(text)):
        original = binding.original.string
        line = binding.original.line
        if binding.key is not None:
            lead = _LEADING_SPACE.match(original).group()
            line += len(_NEWLINE.findall(lead))
        yield Statement(binding.key, binding.value, original, line, binding.error)


def reads_as(text: str, key: str, value: str) -> bool:
    """Whether ``text`` parses as exactly one statement binding ``key`` to ``value``."""
    statements = parse(text).statements
    return (
        len(statements) == 1
        and not statements[0].error
        and statements[0].key == key
        and statements[0].value == value
    )


def assignments(key: str, value: str, old: Statement | None, newline: str) -> Iterator[str]:
    """Yield texts for a statement binding ``key`` to ``value``, best first.

    Each text reads back as exactly that binding on its own; whether it also does inside the
    file is for the caller to check, since a quoted value ending in a backslash can swallow
    the statements after it on python-dotenv 0.21. With ``old`` (the statement being replaced)
    the texts keep its leading blank lines, ``export`` prefix, key spelling, ``=`` spacing,
    inline comment and line break; without it they are a plain ``KEY=value`` line.
    """
    if old is None:
        lead, head, comment, end = "", _key_text(key) + "=", "", newline
    else:
        lead, head, comment, end = _split_statement(old, key)
    comments = [comment, ""] if comment else [""]
    for comment_text in comments:
        for quoted in _quotings(value, _quote_style(old, head)):
            text = lead + head + quoted + comment_text + end
            if reads_as(text, key, value):
                yield text


def _key_text(key: str) -> str:
    return key if _PLAIN_KEY.fullmatch(key) else "'" + key + "'"


def _split_statement(old: Statement, key: str) -> tuple[str, str, str, str]:
    """Cut an assignment into leading blanks, head (up to the value), comment, line break."""
    text = old.text
    end_match = _LINE_END.search(text)
    end = end_match.group() if end_match else ""
    body = text[: len(text) - len(end)]
    lead = _LEADING_SPACE.match(body).group()
    rest = body[len(lead):]

    head_match = _ASSIGNMENT_HEAD.match(rest)
    if head_match and head_match.group(3) is not None:
        head = head_match.group()
    else:
        export = head_match.group(1) if head_match and head_match.group(1) else ""
        head = export + _key_text(key) + "="

    return lead, head, _inline_comment(body, old), end


def _inline_comment(body: str, old: Statement) -> str:
    """The inline comment closing the statement (with the spaces before it), or ""."""
    last_line_start = max(body.rfind("\n"), body.rfind("\r")) + 1
    for hash_at in (m.start() for m in re.finditer("#", body[last_line_start:])):
        hash_at += last_line_start
        start = hash_at
        while start > last_line_start and body[start - 1] in " \t\f\v":
            start -= 1
        if old.value is not None and reads_as(body[:start], old.key, old.value):
            return body[start:]
    return ""


def _quote_style(old: Statement | None, head: str) -> str:
    """The quote character the replaced statement used around its value, or ""."""
    if old is None:
        return ""
    rest = old.text.lstrip()
    after_head = rest[len(head):] if rest.startswith(head) else ""
    return after_head[:1] if after_head[:1] in ("'", '"') else ""


def _quotings(value: str, preferred: str) -> list[str]:
    """Ways to write ``value`` after ``KEY=``, the admin's quote style first."""
    single = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    double = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    candidates = []
    if _PLAIN_VALUE.fullmatch(value) and not preferred:
        candidates.append(value)
    candidates += [double, single] if preferred == '"' else [single, double]
    # Last resort, for the one value quoting cannot carry on python-dotenv 0.21: a value
    # ending in a backslash reads back only unquoted.
    candidates.append(value)
    return candidates
