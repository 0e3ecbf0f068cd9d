""".env text as python-dotenv reads it, and assignments written so that it reads them back.

Pure functions only: no file is opened here. The parser is python-dotenv's own
(``dotenv.parser.parse_stream``), so secretsync sees exactly the keys and values an application
that loads its ``.env`` with python-dotenv sees. The parser returns the exact text of every
statement; joining those texts gives the file back byte for byte, which is what lets secretsync
change one statement and leave every other byte alone.

Each text is parsed twice when it holds a carriage return: as it is, for the statements to
keep byte for byte, and with its line breaks translated the way python-dotenv's
``dotenv_values(path)`` reads a file (Python's text mode turns CRLF and CR into LF, also inside
quoted values), for the values an application actually gets.
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
# The keys secretsync manages, reports and logs. A line like `TOKEN:s3cret` parses as one key
# with no value; names outside this set could carry a value or forge report lines.
SAFE_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
# python-dotenv's quoted values and the start of an unquoted value's comment.
_SINGLE_QUOTED = re.compile(r"'((?:\\'|[^'])*)'")
_DOUBLE_QUOTED = re.compile(r'"((?:\\"|[^"])*)"')
_UNQUOTED_COMMENT = re.compile(r"\s+#")
_COMMENT = re.compile(r"[^\S\r\n]*#[^\r\n]*")


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
    """A whole .env file, in two views.

    ``statements`` is every statement with its exact text, for editing. ``read`` is what
    python-dotenv makes of the file when an application loads it: the statements that bind a
    key or cannot be parsed, with their values as read in text mode.
    """

    statements: tuple[Statement, ...]
    bom: bool = False
    read: tuple[Statement, ...] = ()

    @property
    def newline(self) -> str:
        """The line break appended lines get: the file's first one, or LF for a file with none."""
        for statement in self.statements:
            match = _NEWLINE.search(statement.text)
            if match:
                return match.group()
        return "\n"

    def aligned(self) -> bool:
        """Whether both views have the same statements, so that one can be edited by the other.

        A key itself may hold a line break (a quoted key), which the read view has translated.
        """
        raw = [(_read_view(s.key) if s.key is not None else None, s.error)
               for s in self.statements if s.key is not None or s.error]
        return raw == [(s.key, s.error) for s in self.read]

    def text(self) -> str:
        """The file's text, byte for byte what was parsed (BOM included)."""
        return (BOM if self.bom else "") + "".join(s.text for s in self.statements)

    def bindings(self) -> Iterator[Statement]:
        """The statements that bind a key, in file order, with their values as read."""
        return (s for s in self.read if s.key is not None)

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
        return [s.line for s in self.read if s.error]


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
    statements = tuple(_statements(text))
    read = statements if "\r" not in text else tuple(_statements(_read_view(text)))
    return Document(statements, bom, tuple(s for s in read if s.key is not None or s.error))


def _read_view(text: str) -> str:
    """``text`` with its line breaks as Python's text mode (and so python-dotenv) reads them."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _statements(text: str) -> Iterator[Statement]:
    for binding in parse_stream(io.StringIO(text)):
        original = binding.original.string
        line = binding.original.line
        if binding.key is not None:
            lead = _LEADING_SPACE.match(original).group()
            line += len(_NEWLINE.findall(lead))
        yield Statement(binding.key, binding.value, original, line, binding.error)


def reads_as(text: str, key: str, value: str) -> bool:
    """Whether ``text`` reads as exactly one statement binding ``key`` to ``value``."""
    statements = parse(text).read
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
        lead, head, comment, end = "", key + "=", "", newline
    else:
        lead, head, comment, end = _split_statement(old, key)
    comments = [comment, ""] if comment else [""]
    for comment_text in comments:
        for quoted in _quotings(value, _quote_style(old, head)):
            text = lead + head + quoted + comment_text + end
            if reads_as(text, key, value):
                yield text


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
        comment = _inline_comment(body, len(lead) + len(head), old)
    else:
        export = head_match.group(1) if head_match and head_match.group(1) else ""
        head, comment = export + key + "=", ""

    return lead, head, comment, end


def _inline_comment(body: str, value_start: int, old: Statement) -> str:
    """The inline comment after the statement's value (with the spaces before it), or "".

    The value's end is found the way python-dotenv finds it (the closing quote, or the first
    space-and-# of an unquoted value), and kept only if the text without the comment still
    reads as the same binding.
    """
    value_text = body[value_start:]
    quoted = {"'": _SINGLE_QUOTED, '"': _DOUBLE_QUOTED}.get(value_text[:1])
    if quoted:
        match = quoted.match(value_text)
        value_end = match.end() if match else None
    else:
        match = _UNQUOTED_COMMENT.search(value_text)
        value_end = match.start() if match else None
    if value_end is None or old.value is None:
        return ""
    comment = value_text[value_end:]
    if not _COMMENT.fullmatch(comment):
        return ""
    return comment if reads_as(body[:len(body) - len(comment)], old.key, old.value) else ""


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
    # A carriage return survives only as the escape \r: python-dotenv reads files in text
    # mode, where a raw one becomes a line feed.
    double = '"' + (value.replace("\\", "\\\\").replace('"', '\\"')
                    .replace("\r", "\\r")) + '"'
    candidates = []
    if _PLAIN_VALUE.fullmatch(value) and not preferred:
        candidates.append(value)
    candidates += [double, single] if preferred == '"' else [single, double]
    # Last resort, for the one value quoting cannot carry on python-dotenv 0.21: a value
    # ending in a backslash reads back only unquoted.
    candidates.append(value)
    return candidates
