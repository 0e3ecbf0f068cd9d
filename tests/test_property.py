"""Property: any value a source holds survives a sync exactly; untouched lines stay as they were.

The source is written by a reference writer: every value double-quoted, with backslashes and
double quotes escaped. python-dotenv 0.21 cannot read a quoted value that ends in a backslash
back (the backslash escapes the closing quote), so values ending in a backslash are left out of
this test; the literal table in test_sync_rules.py covers a trailing backslash unquoted.
"""

import contextlib
import io
import tempfile
from pathlib import Path

from dotenv import dotenv_values
from dotenv.parser import parse_stream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox import Sandbox, ini
from secretsync.cli import main

SPECIAL = list(" \t\n\r'\"\\#$={}!`;&|*?~") + ["${HOME}", "$X", "\\n", "é", "€", "😀", "\u2028"]
PIECES = st.one_of(
    st.sampled_from(SPECIAL),
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
)
VALUES = st.lists(PIECES, max_size=20).map("".join).filter(lambda v: not v.endswith("\\"))


def write_value(value: str) -> str:
    """The reference writer: a double-quoted value python-dotenv reads back exactly.

    A carriage return is written as the escape: python-dotenv reads a file in text mode, which
    turns a raw one into a line feed.
    """
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "\\r")
    return '"' + escaped + '"'


def read_exact(text: str) -> dict:
    """Values as python-dotenv reads a file holding ``text`` (text mode: CRLF and CR are LF)."""
    translated = text.replace("\r\n", "\n").replace("\r", "\n")
    return dotenv_values(stream=io.StringIO(translated), interpolate=False)


def skeleton(text: str, touched: set) -> str:
    """The text with the statements of ``touched`` keys cut down to the blank lines before them.

    python-dotenv joins the blank lines before a statement to it; those must stay, and so must
    every other statement, byte for byte.
    """
    parts = []
    for binding in parse_stream(io.StringIO(text)):
        original = binding.original.string
        if binding.key in touched:
            original = original[:len(original) - len(original.lstrip())]
        parts.append(original)
    return "".join(parts)


FIXED_LINES = ["# a comment with 'quotes' and \"more\"\n", "\n", "   \n",
               "export APP_EXPORTED=plain\n", "APP_PLAIN = spaced   # inline\n",
               "not a statement\n", "APP_SINGLE='single $HOME'\n"]


@st.composite
def cases(draw):
    managed = draw(st.dictionaries(st.sampled_from([f"API_{i}" for i in range(6)]), VALUES,
                                   min_size=1, max_size=6))
    unmanaged_source = draw(st.dictionaries(st.sampled_from(["OTHER_1", "OTHER_2"]), VALUES))
    in_target = draw(st.dictionaries(
        st.sampled_from(sorted(managed) + ["API_STALE"]), VALUES, max_size=7))
    app = draw(st.dictionaries(st.sampled_from([f"APP_{i}" for i in range(4)]), VALUES))
    fixed = draw(st.lists(st.sampled_from(FIXED_LINES), max_size=4))
    lines = ([f"{k}={write_value(v)}\n" for k, v in in_target.items()]
             + [f"{k}={write_value(v)}\n" for k, v in app.items()] + fixed)
    lines = draw(st.permutations(lines))
    final_break = draw(st.booleans())
    target = "".join(lines)
    if not final_break and target.endswith("\n"):
        target = target[:-1]
    return managed, unmanaged_source, target


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_property_any_value_survives_a_sync_and_other_lines_stay(case):
    managed, unmanaged_source, target_text = case
    source_text = "".join(f"{k}={write_value(v)}\n"
                          for k, v in {**unmanaged_source, **managed}.items())
    assert read_exact(source_text) == {**unmanaged_source, **managed}

    with tempfile.TemporaryDirectory() as root:
        box = Sandbox(Path(root))
        box.write_source(source_text)
        box.write_target(target_text)
        box.configure(text=ini({"app": box.job(sync="API_*")}))
        old_values = read_exact(target_text)

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(["-c", str(box.config), "--lock-file", str(box.lock)])

        assert rc == 0, out.getvalue() + err.getvalue()
        new_text = box.target.read_bytes().decode("utf-8")
        new_values = read_exact(new_text)
        for key, value in managed.items():
            assert new_values[key] == value, key
        target_by_path = dotenv_values(box.target, interpolate=False)
        source_by_path = dotenv_values(box.source, interpolate=False)
        for key in managed:
            assert target_by_path[key] == source_by_path[key], key

        touched = {k for k in managed if old_values.get(k, object()) != managed[k]}
        before, after = skeleton(target_text, touched), skeleton(new_text, touched)
        statements = list(parse_stream(io.StringIO(target_text)))
        if (touched - set(old_values) and not target_text.endswith(("\n", "\r"))
                and statements and statements[-1].key not in touched):
            # Appending needs a line break after the old last statement first.
            assert after == before + "\n"
        else:
            assert after == before
        if not touched:
            assert new_text == target_text
