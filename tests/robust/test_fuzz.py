"""Property: over generated .env texts, a sync fails cleanly or is exactly right.

Either the job fails (exit 1, target byte-identical, no temp file, no backup) or every managed
key of the target reads back (python-dotenv, no interpolation) as the source's, every statement
that binds no managed key is byte-identical, a managed key already equal is not rewritten, and
the old bytes are in a backup if anything changed.
"""

import io
import shutil
import tempfile
from collections import Counter
from fnmatch import fnmatchcase
from pathlib import Path

from dotenv.parser import parse_stream
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from robustlib import SCALE, Scenario, failure_report, snapshot, temp_leftovers, values

KEYS = ["API_KEY", "API_SECRET", "API_URL", "API_PEM", "DB_DSN", "LOCAL", "api.dot", "API-dash"]
SYNC = "API_* api.* API-*"
PRESERVE = "API_URL"

VALUE_CHARS = st.sampled_from(
    list("aZ09 _-") + list("'\"\\#=$`{}!\t\n\r") + ["\u00e9", "\u2603", "\U0001f511", "\x7f"]
)
values_st = st.text(VALUE_CHARS, max_size=24)


@st.composite
def statement(draw):
    kind = draw(st.sampled_from(["plain", "single", "double", "comment", "blank", "junk"]))
    key = draw(st.sampled_from(KEYS))
    value = draw(values_st)
    export = draw(st.sampled_from(["", "", "export "]))
    spaces = draw(st.sampled_from(["", " "]))
    tail = draw(st.sampled_from(["", "", " # note", "  "]))
    if kind == "plain":
        return f"{export}{key}{spaces}={spaces}{value.replace(chr(10), '')}{tail}"
    if kind == "single":
        return f"{export}{key}='{value.replace(chr(39), chr(92) + chr(39))}'{tail}"
    if kind == "double":
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        raw = draw(st.booleans())
        return f'{export}{key}="{value if raw else escaped}"{tail}'
    if kind == "comment":
        return f"# {value.replace(chr(10), ' ')}"
    if kind == "blank":
        return ""
    return draw(st.sampled_from(["not a statement", "'unterminated", "=novalue", key]))


@st.composite
def env_text(draw, allow_bom=True):
    lines = draw(st.lists(statement(), max_size=8))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    text = newline.join(lines)
    if lines and draw(st.booleans()):
        text += newline
    if allow_bom and draw(st.integers(0, 9)) == 0:
        text = "\ufeff" + text
    return text


def managed(key):
    return (any(fnmatchcase(key, p) for p in SYNC.split())
            and not any(fnmatchcase(key, p) for p in PRESERVE.split()))


def kept_statements(text, changed):
    """The texts that must stay byte-identical: every statement not binding a changed key."""
    text = text.removeprefix("\ufeff")  # the BOM is compared on its own
    return [s.original.string for s in parse_stream(io.StringIO(text))
            if s.key is None or s.key not in changed]


def assert_in_order(old_kept, new_text):
    """Each kept statement's exact text is in the new file, in the old order, not overlapping.

    (Searched as text, not re-parsed: python-dotenv joins a blank line to the statement after
    it, so a blank line before an appended key is one statement in the new file.)
    """
    position = 0
    for text in old_kept:
        found = new_text.find(text, position)
        assert found >= 0, f"statement {text!r} is gone or moved"
        position = found + len(text)


def check(source, target, with_stderr=False):
    outcome, stderr = _check(source, target)
    return (outcome, stderr) if with_stderr else outcome


def _check(source, target):
    base = Path(tempfile.mkdtemp(prefix="secretsync-fuzz-", dir="/tmp"))
    try:
        scenario = Scenario(base, source_text=source.encode(), target_text=target.encode(),
                            options={"sync": SYNC, "preserve": PRESERVE})
        before = snapshot(scenario.target)

        result = scenario.forked(timeout=10)

        assert not result.timed_out
        assert "Traceback" not in result.stderr, failure_report(result)
        assert temp_leftovers(scenario.appdir) == []
        after = snapshot(scenario.target)
        if result.returncode != 0:
            assert result.returncode == 1, failure_report(result)
            assert after == before, "a failed job touched the target"
            assert scenario.backups() == []
            return "failed", result.stderr

        src, old, new = values(source.encode()), values(target.encode()), values(after["bytes"])
        wanted = {k: v for k, v in src.items() if managed(k)}
        for key, value in wanted.items():
            assert new.get(key, "<absent>") == value, f"{key}: {new.get(key)!r} != {value!r}"
        for key, value in old.items():
            if key not in wanted:
                assert new.get(key, "<absent>") == value, f"unmanaged {key} changed"
        changed = {k for k in wanted if old.get(k, "<absent>") != wanted[k]}
        doubled = Counter(s.key for s in parse_stream(io.StringIO(target)) if s.key)
        changed |= {k.lstrip("\ufeff") for k, n in doubled.items() if n > 1 and managed(k)}
        assert after["bytes"].startswith(b"\xef\xbb\xbf") == target.startswith("\ufeff"), "BOM"
        old_kept = kept_statements(target, changed)
        assert_in_order(old_kept, after["bytes"].decode().removeprefix("\ufeff"))
        if after["bytes"] == before["bytes"]:
            assert after["mtime_ns"] == before["mtime_ns"] and scenario.backups() == []
            return "unchanged", result.stderr
        assert [b.read_bytes() for b in scenario.backups()] == [before["bytes"]]
        return "synced", result.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)


@settings(max_examples=150 * SCALE, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(source=env_text(), target=env_text())
@example(source="API_SECRET=\"#Z'\"\nAPI_PEM=\"`\"\n",  # F4 in the findings: a 60 s spin
         target="\ufeff'unterminated\nexport DB_DSN='\r' # note\n\nexport API_PEM=\"\"")
def test_generated_env_texts_sync_exactly_or_fail_cleanly(source, target):
    check(source, target)


@settings(max_examples=100 * SCALE, deadline=None)
@example(data={"API_KEY": "$"}, target="API_SECRET='\\'")  # F3 in the findings
@given(data=st.dictionaries(st.sampled_from(KEYS[:5]), values_st, min_size=1),
       target=env_text())
def test_any_value_in_a_parsable_source_survives_a_sync(data, target):
    """A source written the way a careful admin would (double quotes, escaped) that
    python-dotenv reads back exactly: its values can be written, so the sync must succeed
    unless the target holds a statement python-dotenv cannot parse."""
    source = "".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"\n'
        for k, v in data.items()
    )
    if values(source.encode()) != data or not any(managed(k) for k in data):
        return  # python-dotenv itself cannot read this spelling back; nothing to test
    outcome, stderr = check(source, target, with_stderr=True)
    if outcome == "failed":
        # Allowed only where python-dotenv would read the written value back differently
        # whatever the spelling: an open quote in a target line, or a quoted statement before
        # it that would swallow it (`A='\\'` followed by a line holding a quote). The engine
        # must then refuse with its read-back message rather than write.
        assert any(reason in stderr for reason in REFUSALS), stderr
        text = target.removeprefix("\ufeff")
        unparsable = any(s.error for s in parse_stream(io.StringIO(text)))
        assert unparsable or _refusal_justified(text, data), "a clean sync failed"


# The engine's own words for "written, this would read back differently": its re-parse check.
# Also the refusal of a target whose carriage returns inside quoted values make python-dotenv
# (reading in text mode) see other statements than its bytes hold.
REFUSALS = ("reads it back exactly", "would change statements secretsync does not manage",
            "cannot parse", "read it differently from its bytes")


def _refusal_justified(target, data):
    """Whether a refusal to write is plausible: a key changes in place (not modelled here),
    or appending each new key in the source's own spelling would not read back exactly."""
    old = values(target.encode())
    wanted = {k: v for k, v in data.items() if managed(k)}
    if any(k in old and old[k] != v for k, v in wanted.items()):
        return True
    joined = target if target.endswith(("\n", "\r")) or not target else target + "\n"
    for key, value in wanted.items():
        if key not in old:
            escaped = value.replace("\\", "\\\\").replace('"', '\\"')
            joined += f'{key}="{escaped}"\n'
    got = values(joined.encode())
    return any(got.get(k) != v for k, v in wanted.items())
