"""No value from a secrets file in stdout, stderr, the journal, file names or a hook's environment.

Distinctive sentinel values go through adds, changes, failures (an unparsable source line after
a sentinel, a target that is not UTF-8, a duplicate, an unparsable target line) and a hook;
then everything a user or a log reader can see is searched for them.
"""

import os
import secrets

import pytest

from sandbox import ini


def _sentinels(n):
    return ["SENTINEL-" + secrets.token_hex(8) for _ in range(n)]


def _leaks(sentinels, text):
    found = []
    for sentinel in sentinels:
        hex_part = sentinel.split("-", 1)[1]
        if sentinel in text or hex_part in text:
            found.append(sentinel)
    return found


@pytest.fixture
def sentinel_box(box):
    s = _sentinels(12)
    shared = box.root / "shared"
    app = box.root / "app"
    box.write_source(
        f"API_NEW={s[0]}\n"
        f"API_CHANGED='{s[1]} with spaces'\n"
        f"API_DUP={s[2]}\nAPI_DUP=\"{s[3]}\"\n"
        f"API_PEM=\"-----BEGIN-----\n{s[4]}\n-----END-----\"\n"
        f"NOT_MANAGED={s[5]}\n"
    )
    bad_source = box.write_source(f"API_OK={s[6]}\nAPI_BAD=\"{s[7]} unterminated\n",
                                  path=shared / "bad.env")
    box.write_target(f"APP=1\nAPI_CHANGED={s[8]}\ngarbage line {s[9]}\n")
    latin = box.write_target(f"API_NEW=old\nAPP=caf".encode() + b"\xe9 " + s[10].encode()
                             + b"\n", path=app / "latin.env")
    created = app / "created.env"
    hook_env = box.root / "hook-env"
    hook_ls = box.root / "hook-ls"
    hook = f"/bin/sh -c 'env > {hook_env}; ls -a {app} > {hook_ls}'"
    box.configure(text=ini({
        "main": box.job(on_change=hook),
        "bad-source": box.job(source=str(bad_source), target=str(created), create="yes"),
        "latin": box.job(target=str(latin)),
        "created": box.job(target=str(created), create="yes", on_change=hook),
    }))
    box.sentinels = s
    box.hook_files = (hook_env, hook_ls)
    return box


def _file_names(root):
    names = []
    for directory, dirs, files in os.walk(root):
        names += dirs + files
    return "\n".join(names)


def test_sentinel_values_never_reach_output_journal_names_or_hook_env(sentinel_box, inproc):
    box = sentinel_box
    s = box.sentinels
    runs = [inproc(box, "-v", "--dry-run"), inproc(box, "-v", "--check"), inproc(box, "-v")]
    box.write_source(box.source.read_text().replace(s[1], s[11]))
    runs += [inproc(box, "-v"), inproc(box, "-v", "backups"),
             inproc(box, "-v", "restore", "main")]

    assert [r.rc for r in runs] == [1, 1, 1, 1, 0, 0]
    assert box.target.read_text().count(s[1]) == 1
    journal = [entry for r in runs for entry in r.journal]
    assert journal, "no journal entry captured"
    assert any("CODE_ARGS" not in f or f["CODE_ARGS"] in ("", "()") for _, f in journal)
    for run in runs:
        assert _leaks(s, run.out) == [], run.out
        assert _leaks(s, run.err) == [], run.err
    for message, fields in journal:
        assert _leaks(s, message) == [], message
        for name, value in fields.items():
            assert _leaks(s, f"{name}={value!r}") == [], name
    assert _leaks(s, _file_names(box.root)) == []
    hook_env, hook_ls = box.hook_files
    assert hook_env.exists() and hook_ls.exists()
    assert _leaks(s, hook_env.read_text()) == []
    assert _leaks(s, hook_ls.read_text()) == []
    # The values did go where they belong: the sync itself happened.
    assert s[0] in box.target.read_text() or s[0] in box.backup_files("main")[-1].read_text()


def test_sentinel_values_never_reach_the_output_of_the_command_process(sentinel_box):
    box = sentinel_box
    s = box.sentinels

    results = [box.run("-v", "--dry-run"), box.run("-v"), box.run("-v", "--check")]

    assert [r.rc for r in results] == [1, 1, 1]
    for result in results:
        assert _leaks(s, result.out + result.err) == [], result.out + result.err
        assert "Traceback" not in result.err
    assert _leaks(s, _file_names(box.root)) == []
    assert _leaks(s, box.hook_files[0].read_text()) == []
