"""Configuration: options, defaults, [DEFAULT], drop-ins, and every way a config is refused."""

import os
import uuid
import shutil
from pathlib import Path

import pytest
from dotenv import dotenv_values

import secretsync.config
from secretsync.cli import main

from sandbox import ini, snapshot

SOURCE = "API_A=a1\nAPI_B=b1\nAPI_C=c1\nAPI_D=d1\napi_lower=l1\nOTHER=o1\n"


def _values(path):
    return dotenv_values(path, interpolate=False)


@pytest.mark.parametrize("sync, expected", [
    ("API_A API_B", {"API_A", "API_B"}),
    ("API_A,API_B", {"API_A", "API_B"}),
    ("API_A, API_B ,API_C", {"API_A", "API_B", "API_C"}),
    ("API_A\nAPI_B\n  API_C,API_D", {"API_A", "API_B", "API_C", "API_D"}),
    ("API_[AB]", {"API_A", "API_B"}),
    ("API_?", {"API_A", "API_B", "API_C", "API_D"}),
    ("api_*", {"api_lower"}),
    ("API_*", {"API_A", "API_B", "API_C", "API_D"}),
    ("Api_*  OTHER", {"OTHER"}),
])
def test_sync_patterns_split_on_spaces_commas_newlines_and_match_case_sensitively(
        box, sync, expected):
    box.write_source(SOURCE)
    box.write_target("")
    box.configure({"app": box.job(sync=sync)})

    result = box.run()

    assert result.rc == 0, result.err
    assert set(_values(box.target)) == expected
    assert set(result.keys("add")) == expected


def test_sync_preserve_beats_sync(box):
    box.write_source(SOURCE)
    box.write_target("API_B=local\n")
    box.configure({"app": box.job(sync="API_*", preserve="API_B, API_C")})

    result = box.run()

    assert result.rc == 0, result.err
    assert _values(box.target) == {"API_B": "local", "API_A": "a1", "API_D": "d1"}
    assert "API_B" not in result.out and "API_C" not in result.out


def test_config_default_section_applies_to_every_job_and_a_job_overrides_it(box, tmp_path):
    second = tmp_path / "app" / "second.env"
    box.write_source(SOURCE)
    box.write_target("")
    box.write_target("", path=second)
    text = ini({
        "DEFAULT": {"source": str(box.source), "sync": "API_A", "backup_dir": str(box.backups)},
        "one": {"target": str(box.target)},
        "two": {"target": str(second), "sync": "API_B"},
    })
    box.configure(text=text)

    result = box.run()

    assert result.rc == 0, result.err
    assert _values(box.target) == {"API_A": "a1"}
    assert _values(second) == {"API_B": "b1"}


def test_config_later_section_of_the_same_file_is_refused_as_duplicate(box):
    box.write_source(SOURCE)
    box.write_target("")
    text = ini({"app": box.job()}) + "\n[app]\nsync = API_B\n"
    box.configure(text=text)
    before = snapshot(box.target)

    result = box.run()

    assert result.rc == 2
    assert len(result.err_lines) == 1
    assert str(box.config) in result.err and "app" in result.err
    assert snapshot(box.target) == before


def _run_with_system_config(monkeypatch, capsys, main_file, drop_in_dir, lock):
    monkeypatch.setattr(secretsync.config, "CONFIG_FILE", str(main_file))
    monkeypatch.setattr(secretsync.config, "CONFIG_DIR", str(drop_in_dir))
    rc = main(["--lock-file", str(lock)])
    return rc, capsys.readouterr()


def test_config_drop_ins_are_read_in_name_order_after_the_main_file(
        box, tmp_path, monkeypatch, capsys):
    box.write_source(SOURCE)
    box.write_target("")
    main_file = tmp_path / "secretsync.conf"
    drop_ins = tmp_path / "secretsync.d"
    drop_ins.mkdir()
    main_file.write_text(ini({"app": box.job(sync="API_A")}))
    (drop_ins / "20-last.conf").write_text(ini({"app": {"sync": "API_C"}}))
    (drop_ins / "10-first.conf").write_text(ini({"app": {"sync": "API_B"},
                                                 "DEFAULT": {"create": "yes"}}))
    (drop_ins / "30-ignored.conf.disabled").write_text(ini({"app": {"sync": "OTHER"}}))
    box.target.unlink()

    rc, captured = _run_with_system_config(monkeypatch, capsys, main_file, drop_ins, box.lock)

    assert rc == 0, captured.err
    assert _values(box.target) == {"API_C": "c1"}


def test_config_drop_in_can_define_a_job_without_a_main_file(
        box, tmp_path, monkeypatch, capsys):
    box.write_source(SOURCE)
    box.write_target("")
    drop_ins = tmp_path / "secretsync.d"
    drop_ins.mkdir()
    (drop_ins / "app.conf").write_text(ini({"app": box.job(sync="API_D")}))

    rc, captured = _run_with_system_config(
        monkeypatch, capsys, tmp_path / "absent.conf", drop_ins, box.lock)

    assert rc == 0, captured.err
    assert _values(box.target) == {"API_D": "d1"}


def test_config_error_in_a_drop_in_names_the_drop_in(box, tmp_path, monkeypatch, capsys):
    box.write_source(SOURCE)
    box.write_target("")
    main_file = tmp_path / "secretsync.conf"
    drop_ins = tmp_path / "secretsync.d"
    drop_ins.mkdir()
    main_file.write_text(ini({"app": box.job()}))
    bad = drop_ins / "50-bad.conf"
    bad.write_text(ini({"app": {"keep_backups": "lots"}}))
    before = snapshot(box.target)

    rc, captured = _run_with_system_config(monkeypatch, capsys, main_file, drop_ins, box.lock)

    assert rc == 2
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert str(bad) in lines[0] and "[app]" in lines[0] and "keep_backups" in lines[0]
    assert snapshot(box.target) == before
    assert not box.backups.exists()


def test_config_no_main_file_and_no_drop_ins_is_a_config_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(secretsync.config, "CONFIG_FILE", str(tmp_path / "none.conf"))
    monkeypatch.setattr(secretsync.config, "CONFIG_DIR", str(tmp_path / "none.d"))

    rc = main(["--lock-file", str(tmp_path / "lock")])

    err = capsys.readouterr().err.splitlines()
    assert rc == 2
    assert len(err) == 1 and str(tmp_path / "none.conf") in err[0]


# Every refused configuration: (section, option, value); None removes the option.
BAD_OPTIONS = [
    ("other", "colour", "blue"),
    ("other", "source", None),
    ("other", "target", None),
    ("other", "sync", None),
    ("other", "sync", " , "),
    ("other", "mode", "rw-r-----"),
    ("other", "mode", "0888"),
    ("other", "mode", "0666"),
    ("other", "mode", "12345"),
    ("other", "owner", "no-such-user-secretsync"),
    ("other", "group", "no-such-group-secretsync"),
    ("other", "keep_backups", "0"),
    ("other", "keep_backups", "-3"),
    ("other", "keep_backups", "many"),
    ("other", "keep_backups", "2.5"),
    ("other", "remove_missing", "maybe"),
    ("other", "create", "2"),
    ("other", "source", "shared/secrets.env"),
    ("other", "target", "app/.env"),
    ("other", "backup_dir", "backups"),
    ("other", "on_change", "'unbalanced"),
    ("other", "on_change_timeout", "soon"),
    ("other", "on_change_timeout", "0"),
    ("DEFAULT", "colour", "blue"),
    ("DEFAULT", "keep_backups", "none"),
]


@pytest.mark.parametrize("section, option, value", BAD_OPTIONS)
def test_config_bad_option_exits_2_naming_file_section_option_and_does_nothing(
        box, section, option, value):
    box.write_source(SOURCE)
    box.write_target("API_A=old\n")
    jobs = {"app": box.job(sync="API_*"), "other": box.job(sync="API_*")}
    if section == "DEFAULT":
        jobs = {"DEFAULT": {option: value}, **jobs}
    else:
        jobs["other"][option] = value
        if value is None:
            del jobs["other"][option]
    box.configure(jobs)
    before = snapshot(box.target)

    result = box.run()

    assert result.rc == 2, result.out + result.err
    assert len(result.err_lines) == 1, result.err
    line = result.err_lines[0]
    assert str(box.config) in line
    # A value set in [DEFAULT] is found there, not in the job it broke.
    assert f"[{section}]" in line
    assert option in line
    assert "Traceback" not in result.err
    assert result.out == ""
    assert snapshot(box.target) == before
    assert not box.backups.exists()


@pytest.mark.parametrize("name", ["../evil", "-dash", ".hidden", "sp ace", "a/b"])
def test_config_bad_job_name_exits_2_naming_file_and_section(box, name):
    box.write_source(SOURCE)
    box.write_target("API_A=old\n")
    box.configure({"app": box.job(), name: box.job()})
    before = snapshot(box.target)

    result = box.run()

    assert result.rc == 2
    assert len(result.err_lines) == 1
    assert str(box.config) in result.err_lines[0] and f"[{name}]" in result.err_lines[0]
    assert snapshot(box.target) == before
    assert not box.backups.exists()


@pytest.mark.parametrize("text, line", [
    ("source = /x\n[app]\nsync = A\n", 1),
    ("[app]\nsource = /x\nthis line is no option\n", 3),
    ("[app]\nsync = A\nsync = B\n", 3),
    ("[app]\nsync = A\n[app\n", 3),
])
def test_config_malformed_ini_exits_2_naming_file_and_line(box, text, line):
    box.write_source(SOURCE)
    box.write_target("API_A=old\n")
    first = ini({"first": box.job()})
    box.configure(text=first + text)
    offset = len(first.splitlines())
    before = snapshot(box.target)

    result = box.run()

    assert result.rc == 2
    assert len(result.err_lines) == 1
    assert str(box.config) in result.err_lines[0]
    assert f"line {offset + line}" in result.err_lines[0]
    assert snapshot(box.target) == before
    assert not box.backups.exists()


def test_config_missing_config_file_exits_2(box):
    result = box.run(config=box.root / "absent.conf")

    assert result.rc == 2
    assert len(result.err_lines) == 1 and "absent.conf" in result.err
    assert "Traceback" not in result.err


def test_config_numeric_owner_and_group_are_accepted(box):
    box.write_source(SOURCE)
    box.write_target("")
    box.configure({"app": box.job(owner="65534", group="65534", mode="0640")})

    result = box.run()

    assert result.rc == 0, result.err
    st = os.stat(box.target)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (65534, 65534, 0o640)


@pytest.mark.parametrize("word", ["yes", "true", "on", "1", "YES"])
def test_config_booleans_accept_the_usual_words(box, word):
    box.write_source("API_A=a1\n")
    box.write_target("API_GONE=x\n")
    box.configure({"app": box.job(remove_missing=word)})

    result = box.run()

    assert result.rc == 0, result.err
    assert _values(box.target) == {"API_A": "a1"}


def test_config_defaults_of_the_options_that_a_run_cannot_show_quickly(box):
    box.write_source(SOURCE)
    box.configure({"app": {"source": str(box.source), "target": str(box.target),
                           "sync": "API_A"}})

    job, = secretsync.config.load(str(box.config)).jobs

    assert job.backup_dir == "/var/backups/secretsync"
    assert job.keep_backups == 30
    assert job.on_change == ()
    assert job.on_change_timeout == 60
    assert (job.owner, job.group, job.mode) == (None, None, None)
    assert job.create is False
    assert job.rules.remove_missing is False
    assert tuple(job.rules.preserve) == ()


def test_config_default_backup_dir_is_var_backups_secretsync(box):
    name = "core-test-" + uuid.uuid4().hex[:12]
    job_dir = Path("/var/backups/secretsync") / name
    box.write_source(SOURCE)
    box.write_target("API_A=old\n")
    box.configure({name: box.job(sync="API_A", backup_dir=None)})
    try:
        result = box.run()

        assert result.rc == 0, result.err
        backups = list(job_dir.iterdir())
        assert len(backups) == 1
        assert backups[0].read_bytes() == b"API_A=old\n"
        assert os.stat(job_dir).st_mode & 0o7777 == 0o700
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)


def test_config_keep_backups_defaults_to_30(box, inproc):
    box.write_source("API_A=0\n")
    box.write_target("API_A=start\n")
    box.configure({"app": box.job()})
    for n in range(1, 33):
        box.write_source(f"API_A={n}\n")
        assert inproc(box).rc == 0

    assert len(box.backup_files()) == 30


@pytest.mark.parametrize("mode", [0o666, 0o664, 0o646])
def test_config_writable_by_others_is_refused_before_any_job_runs(box, mode):
    box.write_source(SOURCE)
    box.write_target("API_A=old\n")
    box.configure({"app": box.job(on_change="touch " + str(box.root / "hook-ran"))})
    os.chmod(box.config, mode)
    before = snapshot(box.target)

    result = box.run()

    assert result.rc == 2
    assert result.err_lines == [
        f"secretsync: error: {box.config}: writable by group or others (mode {mode:04o}); "
        "refusing it (its on_change commands would run as root)"]
    assert snapshot(box.target) == before
    assert not (box.root / "hook-ran").exists()
    assert not box.backups.exists()


def test_config_owned_by_another_user_is_refused(box):
    box.write_source(SOURCE)
    box.write_target("API_A=old\n")
    box.configure()
    nobody = __import__("pwd").getpwnam("nobody")
    os.chown(box.config, nobody.pw_uid, nobody.pw_gid)

    result = box.run()

    assert result.rc == 2
    assert result.err_lines == [
        f"secretsync: error: {box.config}: owned by uid {nobody.pw_uid}, not root; refusing it "
        "(its on_change commands would run as root)"]
    assert _values(box.target) == {"API_A": "old"}
