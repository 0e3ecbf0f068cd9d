"""One run at a time: the lock, --wait, and the commands that need no lock."""

import os
import subprocess
import time

import pytest

from sandbox import PYTHON, snapshot

HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


@pytest.fixture
def hold_lock(box):
    """Start a process holding the sandbox's lock for ``seconds``; killed afterwards."""
    started = []

    def hold(seconds=60.0):
        box.lock.parent.mkdir(mode=0o700, exist_ok=True)
        process = subprocess.Popen([PYTHON, "-c", HOLDER, str(box.lock), str(seconds)],
                                   stdout=subprocess.PIPE, text=True)
        started.append(process)
        assert process.stdout.readline().strip() == "locked"
        return process

    yield hold
    for process in started:
        process.kill()
        process.wait()


def _drifted(box):
    box.write_source("API_A=new\n")
    box.write_target("API_A=old\n")
    box.configure()
    return snapshot(box.target)


def test_lock_second_run_exits_1_saying_another_run_holds_it(box, hold_lock):
    before = _drifted(box)
    holder = hold_lock()

    result = box.run()

    assert result.rc == 1
    assert "another secretsync run" in result.err
    assert len(result.err_lines) == 1
    assert snapshot(box.target) == before
    assert not box.backups.exists()
    assert holder.poll() is None


def test_lock_wait_succeeds_once_the_holder_releases(box, hold_lock):
    _drifted(box)
    hold_lock(1.0)
    start = time.monotonic()

    result = box.run("--wait", "20")

    assert result.rc == 0, result.err
    assert time.monotonic() - start >= 0.5
    assert box.target.read_text() == "API_A=new\n"


def test_lock_wait_gives_up_after_its_time(box, hold_lock):
    before = _drifted(box)
    hold_lock()
    start = time.monotonic()

    result = box.run("--wait", "0.5")

    assert result.rc == 1
    assert "another secretsync run" in result.err
    assert 0.4 <= time.monotonic() - start < 15
    assert snapshot(box.target) == before


@pytest.mark.parametrize("args, rc", [(("--dry-run",), 0), (("--check",), 3), (("backups",), 0)])
def test_lock_not_needed_by_dry_run_check_and_backups(box, hold_lock, args, rc):
    before = _drifted(box)
    hold_lock()

    result = box.run(*args)

    assert result.rc == rc, result.err
    assert "another secretsync run" not in result.err
    assert snapshot(box.target) == before


def test_lock_restore_needs_the_lock(box, hold_lock):
    _drifted(box)
    assert box.run().rc == 0
    before = snapshot(box.target)
    hold_lock()

    result = box.run("restore", "app")

    assert result.rc == 1
    assert "another secretsync run" in result.err
    assert snapshot(box.target) == before


def test_lock_directory_is_created_0700(box):
    _drifted(box)

    assert box.run().rc == 0

    assert os.stat(box.lock.parent).st_mode & 0o7777 == 0o700
    assert os.stat(box.lock).st_mode & 0o777 == 0o600
