"""Decide what one sync changes in one target: the pure core of secretsync.

A plan is computed from two parsed documents and a job's rules, touches no file, and carries
the complete new text of the target. The text is verified before the plan is returned: parsed
again with python-dotenv, it must bind every managed key to the source's value and leave every
other statement meaning what it meant, or the job fails instead of writing something wrong.
"""

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Iterator, Sequence

from secretsync.envfile import BOM, SAFE_KEY, Document, Statement, assignments, parse
from secretsync.errors import JobError


@dataclass(frozen=True)
class Rules:
    """Which keys a job manages and what it does with keys gone from the source."""

    sync: Sequence[str]
    preserve: Sequence[str] = ()
    remove_missing: bool = False

    def matches(self, key: str) -> bool:
        """Whether ``key`` matches a sync pattern and no preserve pattern (case-sensitive)."""
        return any(fnmatchcase(key, p) for p in self.sync) and not any(
            fnmatchcase(key, p) for p in self.preserve
        )

    def manages(self, key: str) -> bool:
        """Whether secretsync writes ``key``: it matches, and is a plain name (SAFE_KEY).

        A key that is not a plain name is never written, removed, reported or logged.
        """
        return self.matches(key) and SAFE_KEY.fullmatch(key) is not None


@dataclass(frozen=True)
class Plan:
    """What a sync does to one target, by key name, and the target's new text."""

    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    stale: tuple[str, ...]
    text: str
    warnings: tuple[str, ...] = field(default=())

    @property
    def changes(self) -> bool:
        """Whether the target has to be rewritten."""
        return bool(self.added or self.changed or self.removed)


def managed_values(source: Document, rules: Rules, source_name: str) -> dict[str, str]:
    """Return the source's managed keys and values, refusing a source that is not usable.

    The source must parse completely, every managed key must have a value, and at least one
    key must be managed: each of these failures names the file and line.
    """
    errors = source.error_lines()
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise JobError(
            f"{source_name}: line {errors[0]}: python-dotenv cannot parse this statement{more}"
        )

    values: dict[str, str] = {}
    for statement in source.bindings():
        if not rules.matches(statement.key):
            continue
        if not rules.manages(statement.key):
            # Name only the line: such a "key" is often a whole mistyped line, value included.
            raise JobError(
                f"{source_name}: line {statement.line}: a key matching the sync patterns is not "
                "a plain name (letters, digits, _ . -); fix that line"
            )
        if statement.value is None:
            raise JobError(
                f"{source_name}: line {statement.line}: {statement.key} has no value (no '=')"
            )
        values[statement.key] = statement.value
    if not values:
        raise JobError(f"{source_name}: no key matches the job's sync patterns")
    return values


def duplicate_warnings(document: Document, rules: Rules, name: str) -> list[str]:
    """Warnings for managed keys bound more than once; the last binding is the one that counts."""
    return [
        f"{name}: {key} is set on lines {', '.join(map(str, lines))}; the last one counts"
        for key, lines in document.duplicates().items()
        if rules.manages(key)
    ]


def make_plan(
    source: Document,
    target: Document,
    rules: Rules,
    source_name: str,
    target_name: str,
) -> Plan:
    """Plan the sync of ``target`` from ``source`` under ``rules``.

    Managed keys missing from the target are appended, those with another value are rewritten
    in place at their last binding, equal ones are left alone however they are quoted. Target
    keys that match the rules but are gone from the source are removed (every binding of them)
    with ``remove_missing``, and otherwise reported as stale.
    """
    wanted = managed_values(source, rules, source_name)
    warnings = duplicate_warnings(source, rules, source_name)
    warnings += duplicate_warnings(target, rules, target_name)
    warnings += [
        f"{target_name}: line {line}: python-dotenv cannot parse this statement; left as it is"
        for line in target.error_lines()
    ]

    current = target.values()
    last_binding = {s.key: i for i, s in enumerate(target.statements) if s.key is not None}
    added = [key for key in wanted if key not in current]
    changed = [key for key in wanted if key in current and current[key] != wanted[key]]
    missing = [key for key in current if rules.manages(key) and key not in wanted]
    removed = missing if rules.remove_missing else []
    stale = [] if rules.remove_missing else missing

    plan = Plan(tuple(added), tuple(changed), tuple(removed), tuple(stale), target.text(),
                tuple(warnings))
    if not plan.changes:
        return plan

    if not target.aligned():
        raise JobError(
            f"{target_name}: carriage returns inside its values make python-dotenv read it "
            "differently from its bytes; secretsync will not edit it"
        )
    replace = {last_binding[key]: key for key in changed}
    layout = _Layout(target, wanted, replace, set(removed), added, target_name)
    return Plan(plan.added, plan.changed, plan.removed, plan.stale, layout.verified_text(),
                plan.warnings)


class _Slot:
    """A statement secretsync writes, with the texts it may take, tried in order."""

    def __init__(self, key: str, value: str, texts: Iterator[str], target_name: str) -> None:
        self.key = key
        self.value = value
        self._target_name = target_name
        # Ways are made only when needed: each is checked by parsing it, and values can be
        # large.
        self._pending = texts
        self._texts: list[str] = []
        self._choice = 0
        if not self.can_advance_to(0):
            raise self._unwritable(target_name)

    @property
    def text(self) -> str:
        return self._texts[self._choice]

    @property
    def choice(self) -> int:
        return self._choice

    @choice.setter
    def choice(self, choice: int) -> None:
        self._choice = choice

    def _unwritable(self, target_name: str) -> JobError:
        return JobError(f"{target_name}: {self.key}: the value cannot be written so that "
                        "python-dotenv reads it back exactly")

    def can_advance_to(self, choice: int) -> bool:
        while len(self._texts) <= choice:
            text = next(self._pending, None)
            if text is None:
                return False
            self._texts.append(text)
        return True

    def can_advance(self) -> bool:
        return self.can_advance_to(self._choice + 1)

    def avoid(self, char: str) -> bool:
        """Take the next way (this one included) without ``char``; False if none is left.

        Only forward: every change of a slot's way moves it on, so the search ends.
        """
        choice = self._choice
        while self.can_advance_to(choice):
            if char not in self._texts[choice]:
                self._choice = choice
                return True
            choice += 1
        return False

    def advance(self) -> None:
        """Take the next way of writing the statement, or fail the job if none is left."""
        if not self.can_advance():
            raise self._unwritable(self._target_name)
        self._choice += 1


class _Layout:
    """The new target as pieces: kept statement texts and the slots secretsync writes."""

    def __init__(self, target: Document, wanted: dict[str, str], replace: dict[int, str],
                 removed: set[str], added: list[str], target_name: str) -> None:
        self._bom = target.bom
        self._target_name = target_name
        # Each piece is a kept text (str) or a _Slot; `expected` holds what each meaningful
        # statement of the new text must read as, and `owners` which piece it comes from.
        self._pieces: list[str | _Slot] = []
        self._expected: list[tuple] = []
        self._owners: list[int] = []
        newline = target.newline
        # What each kept statement must still read as: its value in the read view.
        read = iter(target.read)

        for index, statement in enumerate(target.statements):
            as_read = next(read) if statement.key is not None or statement.error else None
            if statement.key in removed:
                # Keep the blank lines the parser joined to the front of the statement.
                self._pieces.append(statement.text[: len(statement.text)
                                                   - len(statement.text.lstrip())])
            elif index in replace:
                key = replace[index]
                self._add_slot(key, wanted[key], assignments(key, wanted[key], statement, newline))
            else:
                self._add_kept(statement, as_read)

        if added and not self._ends_with_line_break():
            self._pieces.append(newline)
        for key in added:
            self._add_slot(key, wanted[key], assignments(key, wanted[key], None, newline))

    def _add_kept(self, statement: Statement, as_read: Statement | None) -> None:
        self._pieces.append(statement.text)
        if as_read is not None:
            self._expected.append(as_read.meaning())
            self._owners.append(len(self._pieces) - 1)

    def _add_slot(self, key: str, value: str, texts: Iterator[str]) -> None:
        self._pieces.append(_Slot(key, value, texts, self._target_name))
        self._expected.append((key, value, False))
        self._owners.append(len(self._pieces) - 1)

    def _ends_with_line_break(self) -> bool:
        for piece in reversed(self._pieces):
            text = piece.text if isinstance(piece, _Slot) else piece
            if text:
                return text.endswith(("\n", "\r"))
        return True

    def _text(self) -> str:
        return "".join(p.text if isinstance(p, _Slot) else p for p in self._pieces)

    def verified_text(self) -> str:
        """Return the new text once python-dotenv reads it exactly as intended.

        Where the reading first goes wrong, the written statement at or before that place is
        written its next way (a quoted value ending in a backslash swallows what follows on
        python-dotenv 0.21). Where a kept statement before every written one goes wrong, a
        later written statement's quote closed one the kept statement had left open: the
        later statements are written without that quote character.
        When no way is left the job fails.
        """
        while True:
            first_wrong = self._first_wrong()
            if first_wrong is None:
                return (BOM if self._bom else "") + self._text()
            before = self._slots_between(0, first_wrong + 1)
            if before:
                before[-1].advance()
                continue
            if not self._avoid_quote_after(first_wrong):
                raise JobError(
                    f"{self._target_name}: the new text would change statements secretsync "
                    "does not manage; nothing written"
                )

    def _avoid_quote_after(self, first_wrong: int) -> bool:
        """Write every statement after ``first_wrong`` without one quote character, if that
        makes the reading right further on; return whether it did.

        A kept quoted value ending in a backslash reads right only while no later text holds
        its quote character (python-dotenv 0.21's pattern then runs on to it).
        """
        later = self._slots_between(first_wrong + 1, len(self._owners))
        for quote in ("'", '"'):
            saved = [slot.choice for slot in later]
            if all(slot.avoid(quote) for slot in later):
                moved = self._first_wrong()
                if moved is None or moved > first_wrong:
                    return True
            for slot, choice in zip(later, saved):
                slot.choice = choice
        return False

    def _first_wrong(self) -> int | None:
        """Where the new text's reading first differs from the intended one (None: nowhere)."""
        seen = [s.meaning() for s in parse(self._text()).read]
        if seen == self._expected:
            return None
        return next((i for i, (a, b) in enumerate(zip(seen, self._expected)) if a != b),
                    min(len(seen), len(self._expected)))

    def _slots_between(self, start: int, stop: int) -> list[_Slot]:
        """The written statements among the intended statements start..stop-1, in order."""
        pieces = (self._pieces[owner] for owner in self._owners[start:stop])
        return [piece for piece in pieces if isinstance(piece, _Slot)]
