"""Hostile content: every awkward .env shape, each with its one defined outcome.

A case either syncs (managed keys read back exactly as the source's, every other line
byte-identical, a backup of the old bytes), is a no-op (nothing written at all), or fails the
job (exit 1, a message naming the file and line, target untouched, no temp file, no backup).
"""

import io
from collections import Counter
import random
import string

import pytest
from dotenv.parser import parse_stream

from robustlib import Scenario, binding_keys, failure_report, snapshot, values

PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
    "q+/=XyZ09\n"
    "-----END PRIVATE KEY-----"
)
_rng = random.Random(4)
MIB_VALUE = "".join(_rng.choice(string.ascii_letters + string.digits) for _ in range(1 << 20))
TEN_K_SOURCE = "".join(f"K{i:05d}=value-{i}\n" for i in range(10_000))
TEN_K_TARGET = "# half of them, older\n" + "".join(
    f"K{i:05d}=old-{i}\n" for i in range(0, 10_000, 2)
)


def case(name, source, target, outcome, expected=None, sync="*", stderr=(), **options):
    return pytest.param(source, target, outcome, expected, sync, stderr, options, id=name)


CASES = [
    # A UTF-8 BOM is kept where it is and is never part of a key.
    case("bom_in_source", "\ufeffA=1\nB=2\n", "X=keep\n", "sync", "X=keep\nA=1\nB=2\n"),
    case("bom_in_target", "A=new\n", "\ufeffA=old\nX=keep\n", "sync", "\ufeffA=new\nX=keep\n"),
    case("bom_both_sides_equal", "\ufeffA=1\n", "\ufeffA=1\n", "noop"),
    case("bom_source_plain_target_equal", "\ufeffA=1\n", "A=1\n", "noop"),
    # Line endings: a CRLF file stays CRLF; appended lines take the file's line break.
    case("crlf_target", "A=new\nB=2\n", "A=old\r\nX=keep\r\n", "sync",
         "A=new\r\nX=keep\r\nB=2\r\n"),
    case("crlf_source", "A=1\r\nB=2\r\n", "", "sync", "A=1\nB=2\n"),
    case("mixed_line_endings", "A=new\nB=2\n", "A=old\r\nX=keep\nY=keep\r\n", "sync",
         "A=new\r\nX=keep\nY=keep\r\nB=2\r\n"),
    case("no_final_newline_target", "A=1\n", "X=keep", "sync", "X=keep\nA=1\n"),
    case("no_final_newline_source", "A=1", "", "sync", "A=1\n"),
    case("no_final_newline_changed_last", "A=new\n", "X=keep\nA=old", "sync", None),
    # export prefix: read without it, kept on rewrite.
    case("export_in_target", "A=new\n", "export A=old\nX=1\n", "sync", "export A=new\nX=1\n"),
    case("export_in_source", "export A=v\n", "X=1\n", "sync", None),
    # Quotes, escapes and backslashes.
    case("single_quotes", "A='it has  spaces'\nB='$NOT_EXPANDED'\n", "", "sync"),
    case("double_quotes", 'A="tab\there"\nB="line\\nbreak"\n', "", "sync"),
    case("quoted_differently_but_equal", 'A="same"\nB=same2\n', "A='same'\nB=\"same2\"\n", "noop"),
    case("escaped_quotes", 'A="he said \\"hi\\""\nB=\'it\\\'s\'\nC="mixed \' and \\""\n', "",
         "sync"),
    case("backslashes", "A='C:\\dir\\file'\nB=\"x\\\\y\"\nC=a\\b\n", "A=old\n", "sync"),
    case("trailing_backslash", "A=abc\\\nB='abc\\\\'\nC=a b\\\nD=\"end\\\\\"\n", "", "sync"),
    case("hash_in_values", "A=a#b\nB=\"x #y\"\nC='#z'\nD=v # comment\n", "", "sync"),
    case("equals_in_values", "A=b=c==\nB=\"=\"\n", "", "sync", "A=b=c==\nB==\n"),
    case("pem_multiline", f'KEY="{PEM}"\nESC="{PEM.replace(chr(10), chr(92) + "n")}"\n',
         "OTHER=1\n", "sync"),
    case("tabs_and_trailing_spaces", 'A="\tx\t"\nB="y   "\nC=z   \nD=\t\tw\n', "", "sync"),
    case("empty_values", "A=\nB=''\nC=\"\"\n", "A=old\nB=old\nX=1\n", "sync"),
    case("interpolation_is_literal", "A=${HOME}\nB=\"${A}x\"\nC=$PATH\n", "", "sync"),
    case("non_ascii", "A=h\u00e9llo \u2603\nB=\"\u65e5\u672c\"\n", "", "sync"),
    case("one_mib_value", f"BIG={MIB_VALUE}\n", "BIG=small\n", "sync", f"BIG={MIB_VALUE}\n"),
    case("ten_thousand_keys", TEN_K_SOURCE, TEN_K_TARGET, "sync"),
    case("keys_with_dots_and_dashes", "my.key=1\nmy-key=2\nother=3\n", "X=1\n", "sync",
         "X=1\nmy.key=1\nmy-key=2\n", sync="my.* my-*"),
    # Lines python-dotenv cannot parse: kept byte-identical in a target, fatal in a source.
    case("unparsable_target_lines", "A=new\nB=3\n",
         "X=1\nthis is not valid\nA=old\n'unterminated value\n=novalue\nY=2\n", "sync",
         "X=1\nthis is not valid\nA=new\n'unterminated value\n=novalue\nY=2\nB=3\n"),
    case("unparsable_source_line", "A=1\nthis is not valid\nB=2\n", "X=1\n", "fail",
         stderr=("{source}", "line 2")),
    # Duplicates: the last binding counts, a warning gives the line numbers.
    case("duplicate_in_source", "A=1\nB=x\nA=2\n", "", "sync", stderr=("A", "1", "3")),
    case("duplicate_in_target", "A=new\n", "A=old1\nX=1\nA=old2\n", "sync",
         stderr=("A", "1", "3")),
    # Bytes that are not text: the job fails naming the file and the line.
    case("nul_in_source", b"A=1\nB=x\x00y\n", "X=1\n", "fail", stderr=("{source}", "line 2")),
    case("nul_in_target", "A=1\n", b"X=1\nY=\x00\n", "fail", stderr=("{target}", "line 2")),
    case("invalid_utf8_in_source", b"A=1\nB=\xff\xfe\n", "X=1\n", "fail",
         stderr=("{source}", "line 2")),
    case("invalid_utf8_in_target", "A=1\n", b"X=1\nY=\xc3\x28\n", "fail",
         stderr=("{target}", "line 2")),
    case("no_managed_key_in_source", "OTHER=1\n", "X=1\n", "fail", sync="NINJA_*",
         stderr=("{source}",)),
]


def as_bytes(text):
    return text if isinstance(text, bytes) else text.encode("utf-8")


def statements(text):
    return list(parse_stream(io.StringIO(text)))


def assert_other_lines_identical(old, new, managed):
    """Every statement of the old target that binds no managed key is still there, verbatim.

    The last statement of a file without a final newline may have gained one (a line was
    appended after it).
    """
    old_kept = [s.original.string for s in statements(old) if s.key is None
                or s.key.lstrip("\ufeff") not in managed]
    new_kept = [s.original.string for s in statements(new) if s.key is None
                or s.key.lstrip("\ufeff") not in managed]
    assert len(new_kept) >= len(old_kept), (old_kept, new_kept)
    for index, (before, after) in enumerate(zip(old_kept, new_kept)):
        if before != after and index == len(old_kept) - 1 and not old.endswith(("\n", "\r")):
            assert after in (before + "\n", before + "\r\n"), (before, after)
        else:
            assert before == after, f"statement {index} changed: {before!r} -> {after!r}"


@pytest.mark.parametrize("source, target, outcome, expected, sync, stderr, options", CASES)
def test_hostile_content_has_its_defined_outcome(
    base, source, target, outcome, expected, sync, stderr, options
):
    scenario = Scenario(base, source_text=as_bytes(source), target_text=as_bytes(target),
                        options={"sync": sync, **options})
    before = snapshot(scenario.target)

    result = scenario.run()

    for needle in stderr:
        needle = needle.format(source=scenario.source, target=scenario.target)
        assert needle in result.stderr, failure_report(result)
    assert "Traceback" not in result.stderr, failure_report(result)
    after = snapshot(scenario.target)
    assert scenario.leftovers() == []
    assert (after["uid"], after["gid"], after["mode"]) == (0, 0, 0o640)

    if outcome in ("fail", "noop"):
        assert result.returncode == (1 if outcome == "fail" else 0), failure_report(result)
        assert after == before, "the target was touched"
        assert scenario.backups() == []
        return

    assert result.returncode == 0, failure_report(result)
    new_text = after["bytes"].decode("utf-8")
    old_text = before["bytes"].decode("utf-8")
    src, tgt = values(scenario.source), values(scenario.target)
    managed = {key for key in src if _matches(key, sync)}
    assert managed, "the case has no managed key"
    for key in managed:
        assert tgt.get(key, "<absent>") == src[key], f"{key}: {tgt.get(key)!r} != {src[key]!r}"
    new_counts, old_counts = Counter(binding_keys(new_text)), Counter(binding_keys(old_text))
    doubled = {key for key, count in new_counts.items() if count > 1}
    assert doubled <= {key for key, count in old_counts.items() if count > 1}, "a key doubled"
    assert_other_lines_identical(old_text, new_text, managed)
    if expected is not None:
        assert after["bytes"] == as_bytes(expected)
    if after["bytes"] != before["bytes"]:
        assert [b.read_bytes() for b in scenario.backups()] == [before["bytes"]]


def _matches(key, patterns):
    from fnmatch import fnmatchcase

    return any(fnmatchcase(key, p) for p in patterns.replace(",", " ").split())


def test_value_that_reads_back_differently_is_never_written(base):
    """A value no quoting can round-trip through python-dotenv fails the job, nothing written.

    The source holds a value python-dotenv produced itself, so a writer can always find a
    spelling; this case checks the guard on the value that is hardest to spell: a newline, both
    quote characters and a trailing backslash in one value.
    """
    source = 'A="line1\\nhas \' and \\" and ends \\\\"\n'
    scenario = Scenario(base, source_text=source, target_text="X=1\n")
    before = snapshot(scenario.target)

    result = scenario.run()

    assert "Traceback" not in result.stderr
    if result.returncode == 0:
        assert values(scenario.target)["A"] == values(scenario.source)["A"]
    else:
        assert result.returncode == 1, failure_report(result)
        assert snapshot(scenario.target) == before
    assert scenario.leftovers() == []
