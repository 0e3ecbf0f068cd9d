"""The six rules of a sync (issue 2, "What a sync does to a job"), through the command."""

import io
import os
import stat

import pytest
from dotenv import dotenv_values
from dotenv.parser import parse_stream

from sandbox import snapshot

BOM = "\ufeff"


def _values(path):
    return dotenv_values(path, interpolate=False)


def _text_values(text):
    return dotenv_values(stream=io.StringIO(text), interpolate=False)


def _bindings(text):
    return [b for b in parse_stream(io.StringIO(text))]


def _listing(directory):
    return sorted(os.listdir(directory))


# Rule 1: managed keys are added, changed in place or left alone.

def test_sync_missing_key_is_appended_after_every_old_byte(box):
    box.write_source("API_A=alpha\nAPI_B=beta\nOTHER=no\n")
    old = "APP=1\n# mine\nAPI_A=alpha\n"
    box.write_target(old)
    box.configure()

    result = box.run()

    assert result.rc == 0, result.err
    assert result.keys("add") == ["API_B"]
    new = box.target.read_text()
    assert new.startswith(old)
    appended = _bindings(new[len(old):])
    assert [(b.key, b.value, b.error) for b in appended] == [("API_B", "beta", False)]
    assert new.endswith("\n")


def test_sync_appends_on_a_new_line_when_the_target_lacks_a_final_line_break(box):
    box.write_source("API_A=alpha\n")
    box.write_target("APP=1")
    box.configure()

    assert box.run().rc == 0

    new = box.target.read_text()
    assert new.startswith("APP=1\n")
    assert _text_values(new) == {"APP": "1", "API_A": "alpha"}


@pytest.mark.parametrize("old_line, head", [
    ("API_A=old\n", "API_A="),
    ("export API_A=old\n", "export API_A="),
    ("export  API_A='old'\n", "export  API_A="),
    ("API_A = \"old\"\n", "API_A = "),
])
def test_sync_changed_key_is_rewritten_in_place_keeping_export(box, old_line, head):
    before, after = "APP=1\n# above\n", "# below\nAPP2=2\n"
    box.write_source("API_A=new value\n")
    box.write_target(before + old_line + after)
    box.configure()

    result = box.run()

    assert result.rc == 0, result.err
    assert result.keys("change") == ["API_A"]
    new = box.target.read_text()
    assert new.startswith(before + head) and new.endswith(after)
    middle = new[len(before):len(new) - len(after)]
    assert [(b.key, b.value) for b in _bindings(middle)] == [("API_A", "new value")]
    assert middle.count("\n") == 1


@pytest.mark.parametrize("source_line, target_line", [
    ("API_A=value", 'API_A="value"'),
    ("API_A=value", "API_A='value'"),
    ("API_A='va lue'", 'API_A="va lue"'),
    ('API_A="a\\nb"', "API_A='a\nb'"),
    ("API_A=value", "export API_A=value"),
    ("API_A=value", "API_A=value   # a comment"),
    ("API_A=", "API_A=''"),
])
def test_sync_equal_value_quoted_differently_is_not_rewritten(box, source_line, target_line):
    box.write_source(source_line + "\n")
    box.write_target("APP=1\n" + target_line + "\n")
    box.configure()
    before = snapshot(box.target)
    listing = _listing(box.target.parent)

    result = box.run()

    assert result.rc == 0, result.err
    assert "  in sync" in result.out_lines
    assert snapshot(box.target) == before
    assert _listing(box.target.parent) == listing
    assert not box.backups.exists()


# Rule 2: every byte of every line not changed stays identical.

KEPT_LAYOUTS = {
    "comments-and-blanks": ("# head comment\n\n\nAPP=1\n   # indented comment\n\n",
                            "\n\n# tail comment\nAPP2=2\n"),
    "quoting-and-spacing": ("APP_S='single'\nAPP_D=\"dou ble\"\nexport APP_E=e\n"
                            "APP_SP  =  spaced   \nAPP_T=\ttab\n",
                            "APP_I=x # inline\nAPP_H=a#b\nAPP_M=\"multi\nline\"\n"),
    "unparsable-lines": ("APP=1\nthis is not a statement\n",
                         "APP_Q=\"unterminated\nAPP2=2\n"),
    "crlf": ("# c\r\nAPP=1\r\n\r\n", "APP2='x y'\r\n# end\r\n"),
    "no-final-line-break": ("APP=1\n", "APP2=2"),
    "duplicates-of-other-keys": ("APP=1\nAPP=2\n", "APP=3\n"),
    "non-ascii": ("# commentaire: été\nAPP=über\n", "APP2='日本'\n"),
}


@pytest.mark.parametrize("layout", sorted(KEPT_LAYOUTS))
def test_sync_leaves_every_other_byte_identical(box, layout):
    before, after = KEPT_LAYOUTS[layout]
    newline = "\r\n" if "\r\n" in before else "\n"
    box.write_source("API_A=new\nAPI_B=added\n")
    box.write_target(before + "API_A=old" + newline + after)
    box.configure()

    result = box.run()

    assert result.rc == 0, result.err
    new = box.target.read_bytes().decode()
    assert new.startswith(before + "API_A=new" + newline + after)
    appended = new[len(before + "API_A=new" + newline + after):]
    if not after.endswith(("\n", "\r\n")):
        assert appended.startswith(newline)
    assert [(b.key, b.value) for b in _bindings(appended) if b.key] == [("API_B", "added")]
    assert appended.endswith(newline)
    if newline == "\r\n":
        assert "\n" not in new.replace("\r\n", "")


def test_sync_crlf_target_stays_crlf_when_lines_change_and_are_added(box):
    box.write_source("API_A=new\nAPI_B=b\nAPI_C=c\n")
    box.write_target(b"APP=1\r\nAPI_A=old\r\n")
    box.configure()

    assert box.run().rc == 0

    data = box.target.read_bytes()
    assert data.startswith(b"APP=1\r\nAPI_A=new\r\n")
    assert data.count(b"\n") == data.count(b"\r\n") == 4
    assert _values(box.target) == {"APP": "1", "API_A": "new", "API_B": "b", "API_C": "c"}


def test_sync_unparsable_target_line_is_kept_and_warned_about_by_line(box):
    box.write_source("API_A=new\n")
    box.write_target("APP=1\nnot a statement at all\nAPI_A=old\n")
    box.configure()

    result = box.run()

    assert result.rc == 0, result.err
    assert box.target.read_text() == "APP=1\nnot a statement at all\nAPI_A=new\n"
    warnings = [line for line in result.err_lines if "warning" in line]
    assert any(str(box.target) in w and "line 2" in w for w in warnings), result.err


# Rule 3: values are literal, and survive exactly.

LITERALS = {
    "spaces": "API_V='  two  spaces  '",
    "hash": 'API_V="a#b # not a comment"',
    "hash-unquoted": "API_V=a#b",
    "double-quotes": "API_V='say \"hi\"'",
    "single-quotes": 'API_V="it\'s"',
    "both-quotes": "API_V='both \\' and \"'",
    "equals": "API_V=a=b==c",
    "dollar": "API_V='$HOME ${HOME} ${UNSET:-x} $'",
    "dollar-double": 'API_V="${HOME}x"',
    "dollar-unquoted": "API_V=${HOME}",
    "backslashes": 'API_V="\\\\server\\\\share \\\\n"',
    "trailing-backslash": "API_V=C:\\dir\\",
    "pem": ('API_V="-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASC\n'
            'ab+/cd==\n-----END PRIVATE KEY-----\n"'),
    "pem-escaped": 'API_V="-----BEGIN KEY-----\\nabc\\n-----END KEY-----"',
    "tab-escaped": 'API_V="a\\tb"',
    "tab-literal": "API_V='a\tb'",
    "non-ascii": "API_V=pässwörd€😀",
    "empty": "API_V=",
    "empty-double": 'API_V=""',
    "empty-single": "API_V=''",
    "only-spaces": "API_V='   '",
    "leading-quote": "API_V=\"'quoted'\"",
}
OLD_TARGETS = {
    "add": "",
    "change-plain": "API_V=old\n",
    "change-double": 'API_V="old"\n',
    "change-single": "API_V='old'\n",
    "change-export": "export API_V=old # note\n",
}


@pytest.mark.parametrize("old", sorted(OLD_TARGETS))
@pytest.mark.parametrize("literal", sorted(LITERALS))
def test_sync_value_is_copied_literally(box, inproc, literal, old):
    source_line = LITERALS[literal]
    box.write_source("API_FIRST=1\n" + source_line + "\nAPI_LAST='q\"uote'\n")
    source = _values(box.source)
    assert "API_V" in source and source["API_LAST"] == "q\"uote"
    target_tail = "APP_AFTER='x'\nAPP_D=\"y\"\n"
    box.write_target("APP=1\n" + OLD_TARGETS[old] + target_tail)
    box.configure()

    result = inproc(box)

    assert result.rc == 0, result.out + result.err
    values = _values(box.target)
    for key in ("API_FIRST", "API_V", "API_LAST"):
        assert values[key] == source[key], key
    assert values["APP_AFTER"] == "x" and values["APP_D"] == "y"
    text = box.target.read_text()
    assert text.startswith("APP=1\n")
    assert target_tail in text


def test_sync_value_that_cannot_be_written_exactly_fails_the_job(box):
    # A value with a line break that ends in a backslash: python-dotenv 0.21 reads it back
    # neither quoted (with quotes later in the file) nor unquoted.
    box.write_source('API_W=w\nAPI_V="line one\nline two\\\\"\n')
    assert _values(box.source)["API_V"] == "line one\nline two\\"
    box.write_target("API_V=old\nAPP=\"x\"\nAPP2='y'\n")
    box.configure()
    before = snapshot(box.target)

    result = box.run()

    assert result.rc == 1
    assert "API_V" in result.out
    assert snapshot(box.target) == before
    assert not box.backups.exists()


def test_sync_source_bom_is_not_part_of_the_first_key(box):
    box.write_source(BOM + "API_A=alpha\nAPI_B=beta\n")
    box.write_target("APP=1\n")
    box.configure()

    result = box.run()

    assert result.rc == 0, result.err
    assert result.keys("add") == ["API_A", "API_B"]
    assert _values(box.target) == {"APP": "1", "API_A": "alpha", "API_B": "beta"}


def test_sync_target_bom_is_kept_and_its_first_key_is_changed_in_place(box):
    box.write_source("API_A=new\n")
    box.write_target(BOM + "API_A=old\nAPP=1\n")
    box.configure()

    result = box.run()

    assert result.rc == 0, result.err
    assert result.keys("change") == ["API_A"] and result.keys("add") == []
    assert box.target.read_text() == BOM + "API_A=new\nAPP=1\n"


def test_sync_target_bom_first_key_equal_is_in_sync(box):
    box.write_source("API_A=same\n")
    box.write_target(BOM + "API_A=same\n")
    box.configure()
    before = snapshot(box.target)

    result = box.run("--check")

    assert result.rc == 0, result.out
    assert snapshot(box.target) == before


# Rule 4: duplicate keys, the last binding counts.

def test_sync_duplicate_source_key_last_binding_counts_and_is_warned_by_line(box):
    box.write_source("API_A=first\nOTHER=1\nAPI_A=second\n")
    box.write_target("APP=1\n")
    box.configure()

    result = box.run()

    assert result.rc == 0, result.err
    assert _values(box.target)["API_A"] == "second"
    warnings = [line for line in result.err_lines if "warning" in line and "API_A" in line]
    assert len(warnings) == 1
    assert str(box.source) in warnings[0]
    assert "1" in warnings[0] and "3" in warnings[0]


def test_sync_duplicate_target_key_is_judged_by_its_last_binding(box):
    box.write_source("API_A=second\n")
    box.write_target("API_A=first\nAPP=1\nAPI_A=second\n")
    box.configure()
    before = snapshot(box.target)

    result = box.run()

    assert result.rc == 0
    assert "  in sync" in result.out_lines
    assert snapshot(box.target) == before
    warnings = [line for line in result.err_lines if "warning" in line and "API_A" in line]
    assert len(warnings) == 1 and str(box.target) in warnings[0]
    assert "lines 1, 3" in warnings[0]


def test_sync_duplicate_target_key_changes_its_last_binding(box):
    box.write_source("API_A=third\n")
    box.write_target("API_A=first\nAPP=1\nAPI_A=second\n")
    box.configure()

    result = box.run()

    assert result.rc == 0
    assert _values(box.target)["API_A"] == "third"
    assert box.target.read_text().startswith("API_A=first\nAPP=1\n")


# Rule 5: a source that is not usable fails its job, and only its job.

def _make_fifo(path):
    os.mkfifo(path, 0o600)


SOURCE_FAILURES = {
    "unparsable": (b"API_A=1\nAPP=2\nAPI_X=\"broken\nAPI_B=3\n", 0o600, "line 3"),
    "unparsable-no-key": (b"API_A=1\n=novalue\n", 0o600, "line 2"),
    "unparsable-quote": (b"API_A=1\nAPI_B='open\n", 0o600, "line 2"),
    "no-managed-key": (b"OTHER=1\nMORE=2\n", 0o600, None),
    "managed-key-without-value": (b"API_A=1\nAPI_B\n", 0o600, "line 2"),
    "invalid-utf8": (b"API_A=1\nAPI_B=\xff\xfe\n", 0o600, "line 2"),
    "world-writable": (b"API_A=1\n", 0o606, None),
    "world-writable-only": (b"API_A=1\n", 0o602, None),
    "missing": (None, None, None),
    "directory": ("dir", None, None),
    "fifo": ("fifo", None, None),
}


@pytest.mark.parametrize("case", sorted(SOURCE_FAILURES))
def test_sync_unusable_source_fails_its_job_and_the_others_still_run(box, case):
    content, mode, line = SOURCE_FAILURES[case]
    bad_source = box.root / "shared" / "bad.env"
    bad_target = box.root / "app" / "bad.env"
    if content == "dir":
        bad_source.mkdir()
    elif content == "fifo":
        _make_fifo(bad_source)
    elif content is not None:
        box.write_source(content, mode=mode, path=bad_source)
    box.write_target("API_A=old\n", path=bad_target)
    box.write_source("API_A=good\n")
    box.write_target("API_A=old\n")
    box.configure({
        "bad": box.job(source=str(bad_source), target=str(bad_target)),
        "good": box.job(),
    })
    before = snapshot(bad_target)
    listing = _listing(bad_target.parent)

    result = box.run()

    assert result.rc == 1, result.out + result.err
    assert snapshot(bad_target) == before
    assert not (box.backups / "bad").exists()
    failed = [x for x in result.out_lines if x.startswith("  failed: ")]
    assert len(failed) == 1
    assert str(bad_source) in failed[0]
    if line:
        assert line in failed[0]
    assert _values(box.target) == {"API_A": "good"}
    assert sorted(os.listdir(bad_target.parent)) == sorted(set(listing))
    assert result.out_lines[-1].endswith("1 updated, 0 in sync, 1 failed")
    assert "Traceback" not in result.err


# Rule 6: nothing to change, nothing written.

def test_sync_nothing_to_change_writes_nothing_and_runs_no_hook(box):
    marker = box.root / "hook-ran"
    box.write_source("API_A=same\nAPI_B='x y'\n")
    box.write_target("APP=1\nAPI_A=same\nAPI_B=\"x y\"\n")
    box.configure({"app": box.job(on_change=f"touch {marker}")})
    os.utime(box.target, ns=(1_000_000_000, 1_000_000_000))
    before = snapshot(box.target)
    dir_before = os.stat(box.target.parent)

    result = box.run()

    assert result.rc == 0, result.err
    assert result.out_lines == [f"app: {box.target}", "  in sync",
                                "1 job: 0 updated, 1 in sync, 0 failed"]
    assert snapshot(box.target) == before
    assert _listing(box.target.parent) == [".env"]
    assert os.stat(box.target.parent).st_mtime_ns == dir_before.st_mtime_ns
    assert not box.backups.exists()
    assert not marker.exists()


def test_sync_written_target_is_a_new_inode_and_no_temp_file_remains(box):
    box.write_source("API_A=new\n")
    box.write_target("API_A=old\n")
    box.configure()
    inode = os.stat(box.target).st_ino

    assert box.run().rc == 0

    assert os.stat(box.target).st_ino != inode
    assert _listing(box.target.parent) == [".env"]
    assert stat.S_ISREG(os.lstat(box.target).st_mode)
