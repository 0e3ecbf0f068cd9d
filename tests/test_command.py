"""The secretsync command: modes, job selection, the report, exit codes, errors as one line."""

import configparser
import os
import re
import subprocess

import pytest

from sandbox import PYTHON, REPO, snapshot


def _three_jobs(box):
    """Jobs one (add and change), two (change) and three (in sync), each its own target."""
    targets = {name: box.root / "app" / f"{name}.env" for name in ("one", "two", "three")}
    box.write_source("API_A=a\nAPI_B=b\n")
    box.write_target("API_A=old\n", path=targets["one"])
    box.write_target("API_A=a\nAPI_B=old\n", path=targets["two"])
    box.write_target("API_A=a\nAPI_B=b\n", path=targets["three"])
    box.configure({name: box.job(target=str(path)) for name, path in targets.items()})
    return targets


def _snapshots(paths):
    return {name: snapshot(path) for name, path in paths.items()}


def test_command_check_exits_3_on_drift_and_writes_nothing(box):
    targets = _three_jobs(box)
    before = _snapshots(targets)

    result = box.run("--check")

    assert result.rc == 3, result.err
    assert _snapshots(targets) == before
    assert not box.backups.exists()
    assert result.out_lines[-1].startswith("check: 3 jobs: 2 would be updated, 1 in sync")


def test_command_check_exits_0_when_in_sync(box):
    box.write_source("API_A=a\n")
    box.write_target("API_A='a'\n")
    box.configure()

    result = box.run("--check")

    assert result.rc == 0
    assert "  in sync" in result.out_lines


def test_command_check_exits_1_when_a_job_fails(box):
    box.write_source("API_A=a\n")
    box.configure({"app": box.job(), "gone": box.job(source=str(box.root / "absent"))})
    box.write_target("API_A=old\n")

    assert box.run("--check").rc == 1


def test_command_dry_run_reports_and_changes_nothing(box):
    marker = box.root / "hook-ran"
    targets = _three_jobs(box)
    created = box.root / "app" / "new.env"
    box.configure({**{n: box.job(target=str(p), on_change=f"touch {marker}")
                      for n, p in targets.items()},
                   "new": box.job(target=str(created), create="yes")})
    before = _snapshots(targets)
    listing = sorted(os.listdir(box.root / "app"))

    result = box.run("--dry-run")

    assert result.rc == 0, result.err
    assert _snapshots(targets) == before
    assert sorted(os.listdir(box.root / "app")) == listing
    assert not created.exists()
    assert not marker.exists()
    assert not box.backups.exists()
    assert result.keys("add") == ["API_B", "API_A", "API_B"]
    assert result.keys("change") == ["API_A", "API_B"]
    assert result.out_lines[-1] == (
        "dry run: 4 jobs: 3 would be updated, 1 in sync, 0 failed; nothing written")


def test_command_report_lists_each_key_by_name_then_a_summary(box):
    box.write_source("API_A=a\nAPI_B=b\n")
    box.write_target("API_A=old\nAPI_GONE=1\n")
    gone = box.root / "app" / "gone.env"
    box.write_target("API_A=a\nAPI_OLD=1\n", path=gone)
    box.configure({"app": box.job(remove_missing="yes"),
                   "kept": box.job(target=str(gone))})

    result = box.run()

    assert result.rc == 0, result.err
    backup, = box.backup_files()
    assert result.out_lines == [
        f"app: {box.target}",
        "  add     API_B",
        "  change  API_A",
        "  remove  API_GONE",
        f"  updated; backup {backup}",
        f"kept: {gone}",
        "  add     API_B",
        "  stale   API_OLD (gone from the source; kept, remove_missing = no)",
        f"  updated; backup {box.backup_files('kept')[0]}",
        "2 jobs: 2 updated, 0 in sync, 0 failed",
    ]


def test_command_named_jobs_only(box):
    targets = _three_jobs(box)
    before = _snapshots(targets)

    result = box.run("two")
    also = box.run("sync", "one")

    assert result.rc == 0 and also.rc == 0
    assert [x for x in result.out_lines if not x.startswith(" ")][0] == f"two: {targets['two']}"
    assert snapshot(targets["three"]) == before["three"]
    assert targets["two"].read_text() == "API_A=a\nAPI_B=b\n"
    assert targets["one"].read_text() == "API_A=a\nAPI_B=b\n"
    assert sorted(os.listdir(box.backups)) == [
        "one", "two"]


def test_command_unknown_job_exits_2_and_does_nothing(box):
    targets = _three_jobs(box)
    before = _snapshots(targets)

    result = box.run("one", "nope")

    assert result.rc == 2
    assert len(result.err_lines) == 1 and "nope" in result.err_lines[0]
    assert _snapshots(targets) == before
    assert not box.backups.exists()


def test_command_version_matches_the_package_metadata(box):
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    init = (REPO / "secretsync" / "__init__.py").read_text()
    version = re.search(r'__version__ = "([^"]+)"', init).group(1)
    changelog = (REPO / "debian" / "changelog").read_text().split("\n", 1)[0]
    assert f"({version})" in changelog

    result = box.run("--version")

    assert result.rc == 0
    assert result.out.strip() == f"secretsync {version}"


def test_command_help_describes_the_commands_and_options(box):
    result = box.run("--help")

    assert result.rc == 0
    for word in ("--dry-run", "--check", "--config", "--wait", "--quiet", "--verbose",
                 "backups", "restore", "--version"):
        assert word in result.out, word
    assert result.out.startswith("usage: secretsync")


@pytest.mark.parametrize("args", [
    ("--dry-run", "--check"),
    ("-q", "-v"),
    ("--wait", "soon"),
    ("--wait", "-1"),
    ("--no-such-option",),
])
def test_command_usage_errors_exit_2(box, args):
    box.write_source("API_A=a\n")
    box.write_target("API_A=old\n")
    box.configure()
    before = snapshot(box.target)

    result = box.run(*args)

    assert result.rc == 2
    assert "Traceback" not in result.err
    assert snapshot(box.target) == before


def test_command_quiet_prints_no_report(box):
    box.write_source("API_A=a\n")
    box.write_target("API_A=old\n")
    box.configure()

    result = box.run("-q")

    assert result.rc == 0
    assert result.out == ""
    assert box.target.read_text() == "API_A=a\n"


def test_command_no_jobs_configured_is_ok(box):
    box.configure(text="# nothing yet\n")

    result = box.run()

    assert result.rc == 0
    assert result.out_lines == [f"no jobs configured in {box.config}"]


@pytest.mark.parametrize("args", [(), ("--dry-run",), ("--check",)])
def test_command_non_root_without_access_to_the_source_gets_one_line(open_box, args):
    box = open_box
    box.write_source("API_A=a\n")
    box.write_target("API_A=old\n", mode=0o644)
    box.configure()
    os.chmod(box.config, 0o644)
    before = snapshot(box.target)

    result = box.run(*args, user="nobody")

    assert result.rc == 1, result.out + result.err
    assert "Traceback" not in result.err + result.out
    errors = [x for x in result.err_lines if "error" in x]
    assert len(errors) == 1, result.err
    assert "permission denied" in errors[0].lower()
    assert "root" in errors[0]
    assert snapshot(box.target) == before


def test_command_relative_lock_file_is_taken_from_the_working_directory(box, tmp_path):
    box.write_source("API_A=new\n")
    box.write_target("API_A=old\n")
    box.configure()
    work = tmp_path / "work"
    work.mkdir()

    done = subprocess.run(
        [PYTHON, "-m", "secretsync", "-c", str(box.config), "--lock-file", "rel.lock"],
        cwd=work, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)})

    assert done.returncode == 0, done.stderr
    assert (work / "rel.lock").is_file()
    assert box.target.read_bytes() == b"API_A=new\n"


@pytest.mark.parametrize("flag", ["--dry-run", "--check"])
@pytest.mark.parametrize("command", [["backups"], ["restore", "app"]])
def test_command_dry_run_and_check_are_refused_outside_sync(box, flag, command):
    box.write_source("API_A=new\n")
    box.write_target("API_A=old\n")
    box.configure()

    result = box.run(flag, *command)

    assert result.rc == 2
    assert result.err_lines == [
        f"secretsync: error: {command[0]} does not take --dry-run or --check"]


def test_command_quiet_prints_nothing_but_warnings_even_without_journald(box):
    box.write_source("API_A=new\nAPI_A=newer\n")
    box.write_target("API_A=old\n")
    box.configure()

    result = box.run("-q")

    assert result.rc == 0, result.err
    assert result.out == ""
    assert result.err_lines == [
        f"secretsync: warning: app: {box.source}: API_A is set on lines 1, 2; the last one counts"]
    assert box.target.read_bytes() == b"API_A=newer\n"
