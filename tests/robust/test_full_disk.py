"""Full disk: the target's (or the backups') file system is a small tmpfs that is full.

The job fails with one clear line, exit 1, the target byte-identical, no temp file left and no
partial backup; another job on a healthy file system still runs.
"""

import errno
import os
import shutil

import pytest

from robustlib import (
    BACKUP_NAME, Scenario, Tally, failure_report, scaled, snapshot, temp_leftovers, values,
    write_config,
)

TARGET = "# big target\n" + "".join(f"LINE_{i:05d}={'x' * 40}\n" for i in range(4000))
SOURCE = "LINE_00007=changed\nNEW_KEY=added\n"


def fill(mount, leave=0):
    """Fill ``mount`` until ENOSPC, then free ``leave`` bytes again."""
    filler = mount / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    chunk = b"\0" * 65536
    try:
        while True:
            try:
                os.write(fd, chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    break
                chunk = chunk[: len(chunk) // 2]
        if leave:
            size = os.fstat(fd).st_size
            os.ftruncate(fd, max(0, size - leave))
    finally:
        os.close(fd)


def fill_inodes(mount):
    """Use every inode of ``mount``."""
    count = 0
    while True:
        try:
            (mount / f"i{count}").touch()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
            return count
        count += 1


def error_lines(result, scenario):
    """stderr lines about the failed job (they name its target or its job)."""
    return [line for line in result.stderr.splitlines()
            if str(scenario.target) in line or str(scenario.backup_dir) in line]


def assert_failed_cleanly(result, scenario, before):
    assert result.returncode == 1, failure_report(result)
    assert "Traceback" not in result.stderr, failure_report(result)
    lines = [line for line in error_lines(result, scenario)
             if "space" in line.lower() or "no room" in line.lower()]
    assert len(lines) == 1, f"want one clear line about the full disk:\n{result.stderr}"
    assert snapshot(scenario.target) == before, "target changed"
    assert temp_leftovers(scenario.appdir) == [], "temp file left"
    job_dir = scenario.backup_dir / scenario.job
    if job_dir.is_dir():
        for entry in job_dir.iterdir():
            assert BACKUP_NAME.match(entry.name), f"partial backup left: {entry.name}"
            assert entry.read_bytes() == before["bytes"], f"partial backup {entry.name}"


@pytest.mark.parametrize("leave, backups_here", [
    (0, True), (4096, True), (40 * 1024, True), (300 * 1024, True),
    (0, False), (4096, False), (100 * 1024, False),
], ids=["full", "4k_free", "40k_free", "room_for_backup_only",
        "full_backups_elsewhere", "4k_free_backups_elsewhere", "100k_free_backups_elsewhere"])
def test_full_target_filesystem_fails_cleanly(base, tmpfs, leave, backups_here):
    mount = tmpfs("small", "size=1m,mode=0755")
    scenario = Scenario(base, source_text=SOURCE, target_text=None)
    scenario.appdir = mount / "app"
    scenario.appdir.mkdir()
    scenario.target = scenario.appdir / ".env"
    if backups_here:
        scenario.backup_dir = mount / "backups"
    scenario.write_target(TARGET)
    scenario.write_config(target=scenario.target, backup_dir=scenario.backup_dir)
    fill(mount, leave)
    before = snapshot(scenario.target)

    result = scenario.run()

    assert_failed_cleanly(result, scenario, before)
    (mount / "filler").unlink()
    again = scenario.run()
    assert again.returncode == 0, failure_report(again)
    assert values(scenario.target)["NEW_KEY"] == "added"
    assert temp_leftovers(scenario.appdir) == []


def test_full_backup_filesystem_fails_cleanly(base, tmpfs):
    mount = tmpfs("backups", "size=64k,mode=0755")
    scenario = Scenario(base, source_text=SOURCE, target_text=TARGET,
                        options={"backup_dir": mount / "b"})
    scenario.backup_dir = mount / "b"
    (scenario.backup_dir / scenario.job).mkdir(parents=True, mode=0o700)
    fill(mount)
    before = snapshot(scenario.target)

    result = scenario.run()

    assert_failed_cleanly(result, scenario, before)


def test_no_free_inode_fails_cleanly(base, tmpfs):
    mount = tmpfs("inodes", "size=4m,nr_inodes=64,mode=0755")
    scenario = Scenario(base, source_text=SOURCE, target_text=None)
    scenario.appdir = mount / "app"
    scenario.appdir.mkdir()
    scenario.target = scenario.appdir / ".env"
    scenario.write_target(TARGET)
    scenario.write_config(target=scenario.target)
    fill_inodes(mount)
    before = snapshot(scenario.target)

    result = scenario.run()

    assert_failed_cleanly(result, scenario, before)


def test_full_disk_fails_one_job_and_the_others_still_run(base, tmpfs):
    mount = tmpfs("small", "size=256k,mode=0755")
    scenario = Scenario(base, source_text=SOURCE, target_text=None)
    scenario.appdir = mount / "app"
    scenario.appdir.mkdir()
    scenario.target = scenario.appdir / ".env"
    scenario.write_target(TARGET[:100_000])
    healthy = base / "healthy.env"
    healthy.write_text("OTHER=1\n")
    healthy.chmod(0o640)
    common = {"source": scenario.source, "sync": "*", "backup_dir": scenario.backup_dir}
    write_config(scenario.config, {"full": {**common, "target": scenario.target},
                                   "healthy": {**common, "target": healthy}})
    fill(mount)
    before = snapshot(scenario.target)

    result = scenario.run()

    assert result.returncode == 1, failure_report(result)
    assert "Traceback" not in result.stderr
    assert snapshot(scenario.target) == before
    assert temp_leftovers(scenario.appdir) == []
    assert values(healthy)["NEW_KEY"] == "added"


def test_full_disk_repeatedly_never_leaves_a_trace(base, tmpfs):
    """Many sizes of free space between 0 and a whole new target, each run must fail or finish."""
    mount = tmpfs("small", "size=512k,mode=0755")
    tally = Tally()
    target = TARGET[:150_000]
    for attempt in range(scaled(24)):
        leave = (attempt % 24) * 16 * 1024  # 0 to 368 KiB free, again and again
        with tally.attempt(f"{leave} bytes free"):
            for entry in mount.iterdir():
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            scenario = Scenario(base / f"s{attempt}", source_text=SOURCE, target_text=None)
            scenario.appdir = mount / "app"
            scenario.appdir.mkdir()
            scenario.target = scenario.appdir / ".env"
            scenario.backup_dir = mount / "backups"
            scenario.write_target(target)
            scenario.write_config(target=scenario.target, backup_dir=scenario.backup_dir)
            fill(mount, leave)
            before = snapshot(scenario.target)
            result = scenario.run()
            if result.returncode == 0:
                assert values(scenario.target)["NEW_KEY"] == "added"
                assert [b.read_bytes() for b in scenario.backups()] == [before["bytes"]]
                assert temp_leftovers(scenario.appdir) == []
            else:
                assert_failed_cleanly(result, scenario, before)
    tally.finish("full-disk-sweep")
