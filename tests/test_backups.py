"""Backups before every change, their names and modes, pruning, listing and restore."""

import datetime
import os
import re

import pytest

from sandbox import snapshot

NAME = re.compile(r"(\d{8}T\d{6}\.\d{6})Z\.env")


def _change(box, n, runner=None):
    box.write_source(f"API_A=v{n}\n")
    result = (runner or box.run)()
    assert result.rc == 0, result.err
    return result


def test_backup_is_the_old_target_under_a_utc_timestamp_name(box):
    box.write_source("API_A=new\n")
    box.write_target("API_A=old\n# mine\n")
    box.configure()
    start = datetime.datetime.now(datetime.timezone.utc)

    result = box.run()

    end = datetime.datetime.now(datetime.timezone.utc)
    backup, = box.backup_files()
    assert backup.read_bytes() == b"API_A=old\n# mine\n"
    match = NAME.fullmatch(backup.name)
    assert match, backup.name
    taken = datetime.datetime.strptime(match.group(1), "%Y%m%dT%H%M%S.%f").replace(
        tzinfo=datetime.timezone.utc)
    assert start - datetime.timedelta(seconds=1) <= taken <= end + datetime.timedelta(seconds=1)
    assert f"  updated; backup {backup}" in result.out_lines


def test_backup_files_are_0600_and_directories_0700(box):
    box.write_source("API_A=new\n")
    box.write_target("API_A=old\n", mode=0o644)
    box.configure()

    assert box.run().rc == 0

    backup, = box.backup_files()
    assert os.stat(backup).st_mode & 0o7777 == 0o600
    assert os.stat(backup).st_uid == 0
    assert os.stat(box.backups).st_mode & 0o7777 == 0o700
    assert os.stat(box.backups / "app").st_mode & 0o7777 == 0o700
    assert os.listdir(box.backups / "app") == [backup.name]


def test_backup_names_sort_in_the_order_they_were_taken(box, inproc):
    box.write_target("API_A=v0\n")
    box.configure()
    for n in range(1, 6):
        _change(box, n, lambda: inproc(box))

    backups = box.backup_files()
    assert [b.read_text() for b in backups] == [f"API_A=v{n}\n" for n in range(0, 5)]
    assert [b.name for b in backups] == sorted(b.name for b in backups)


@pytest.mark.parametrize("keep", [1, 3])
def test_backup_keep_backups_prunes_to_the_newest(box, inproc, keep):
    box.write_target("API_A=v0\n")
    box.configure({"app": box.job(keep_backups=str(keep))})
    for n in range(1, 6):
        _change(box, n, lambda: inproc(box))

    backups = box.backup_files()
    assert [b.read_text() for b in backups] == [f"API_A=v{n}\n" for n in range(5 - keep, 5)]


def test_backups_command_lists_every_backup_newest_first(box, inproc):
    box.write_target("API_A=v0\n")
    box.configure({"app": box.job(), "empty": box.job(target=str(box.root / "none"))})
    for n in range(1, 4):
        _change(box, n, lambda: inproc(box, "app"))
    files = box.backup_files()

    result = box.run("backups")

    assert result.rc == 0, result.err
    lines = result.out_lines
    assert lines[0].startswith("app: 3 backups in ") and lines[0].endswith(str(box.backups / "app"))
    listed = [line.split()[0] for line in lines[1:4]]
    assert listed == [f.name for f in reversed(files)]
    for line, f in zip(lines[1:4], reversed(files)):
        assert line.endswith(f"{f.stat().st_size} bytes")
    assert lines[4].startswith("empty: 0 backups")


def test_backups_command_for_one_job_and_for_an_unknown_job(box):
    box.write_source("API_A=new\n")
    box.write_target("API_A=old\n")
    box.configure({"app": box.job(), "other": box.job()})
    assert box.run("app").rc == 0

    one = box.run("backups", "app")
    unknown = box.run("backups", "nope")

    assert one.rc == 0
    assert [x for x in one.out_lines if not x.startswith(" ")] == [
        f"app: 1 backup in {box.backups / 'app'}"]
    assert unknown.rc == 2
    assert "nope" in unknown.err and "Traceback" not in unknown.err


def _three_states(box, inproc):
    box.write_target("API_A=v0\n", mode=0o640)
    os.chown(box.target, 65534, 65534)
    box.configure()
    for n in (1, 2):
        _change(box, n, lambda: inproc(box))
    return box.backup_files()


def test_restore_puts_the_latest_backup_back_and_saves_the_current_target(box, inproc):
    first, second = _three_states(box, inproc)
    inode = os.stat(box.target).st_ino

    result = box.run("restore", "app")

    assert result.rc == 0, result.err
    assert box.target.read_text() == "API_A=v1\n"
    st = os.stat(box.target)
    assert st.st_ino != inode
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (65534, 65534, 0o640)
    backups = box.backup_files()
    assert len(backups) == 3
    assert backups[-1].read_text() == "API_A=v2\n"
    assert result.out_lines[0] == f"app: restored {box.target} from {second}"
    assert str(backups[-1]) in result.out_lines[1]
    assert os.listdir(box.target.parent) == [".env"]


def test_restore_a_named_backup(box, inproc):
    first, second = _three_states(box, inproc)

    result = box.run("restore", "app", first.name)

    assert result.rc == 0, result.err
    assert box.target.read_text() == "API_A=v0\n"
    assert box.backup_files()[-1].read_text() == "API_A=v2\n"


@pytest.mark.parametrize("args", [
    ("restore", "app", "20000101T000000.000000Z.env"),
    ("restore", "app", "../../etc/passwd"),
    ("restore", "nope"),
    ("restore",),
    ("restore", "app", "x", "y"),
    ("--dry-run", "restore", "app"),
])
def test_restore_unknown_backup_or_bad_usage_exits_2_and_changes_nothing(box, inproc, args):
    _three_states(box, inproc)
    before = snapshot(box.target)
    backups = box.backup_files()

    result = box.run(*args)

    assert result.rc == 2, result.out + result.err
    assert snapshot(box.target) == before
    assert box.backup_files() == backups
    assert "Traceback" not in result.err
    assert len([x for x in result.err_lines if "error" in x]) == 1


def test_restore_of_a_job_without_backups_fails_with_exit_1(box):
    box.write_source("API_A=new\n")
    box.write_target("API_A=old\n")
    box.configure()
    before = snapshot(box.target)

    result = box.run("restore", "app")

    assert result.rc == 1
    assert snapshot(box.target) == before
