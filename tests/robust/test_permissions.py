"""Permissions: unsafe sources, the temp file's mode at every moment, backups under umask 000."""

import os
import re
import stat
import subprocess
import threading

import pytest

from robustlib import (
    PROJECT, Scenario, Tally, TEMP_NAME, child_env, command, failure_report, scaled, snapshot,
    values,
)


@pytest.mark.parametrize("mode", [0o602, 0o606, 0o666, 0o777, 0o622])
def test_world_writable_source_is_refused(base, mode):
    scenario = Scenario(base, source_text="A=new\n", target_text="A=old\n")
    scenario.source.chmod(mode)
    before = snapshot(scenario.target)

    result = scenario.run()

    assert result.returncode == 1, failure_report(result)
    assert snapshot(scenario.target) == before
    assert scenario.backups() == []
    assert any(str(scenario.source) in line and "writable" in line.lower()
               for line in result.stderr.splitlines()), result.stderr


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o440, 0o400, 0o600])
def test_readable_source_is_warned_about(base, mode):
    scenario = Scenario(base, source_text="A=new\n", target_text="A=old\n")
    scenario.source.chmod(mode)

    result = scenario.run()

    assert result.returncode == 0, failure_report(result)
    assert values(scenario.target)["A"] == "new"
    warnings = [line for line in result.stderr.splitlines()
                if "warning" in line and str(scenario.source) in line]
    assert len(warnings) == (1 if mode & 0o044 else 0), result.stderr


CREATE = re.compile(r'openat\(\d+, "(?P<name>[^"]+)", (?P<flags>[A-Z_|]+), (?P<mode>0\d+)\) = '
                    r"(?P<fd>\d+)")
FCHMOD = re.compile(r"fchmod\((?P<fd>\d+), (?P<mode>0\d+)\) = 0")
CHMOD = re.compile(r'(?:chmod|fchmodat)\((?:AT_FDCWD, |\d+, )?"(?P<name>[^"]+)", (?P<mode>0\d+)')


def temp_modes(trace_text, umask):
    """The modes a temp file had in order: on creation (after umask), then each fchmod."""
    modes = []
    temp_fd = None
    for line in trace_text.splitlines():
        created = CREATE.search(line)
        if created and TEMP_NAME.match(os.path.basename(created["name"])):
            assert "O_EXCL" in created["flags"] and "O_CREAT" in created["flags"], line
            temp_fd = created["fd"]
            modes.append(int(created["mode"], 8) & ~umask)
            continue
        changed = FCHMOD.search(line)
        if changed and changed["fd"] == temp_fd:
            modes.append(int(changed["mode"], 8))
        named = CHMOD.search(line)
        if named and TEMP_NAME.match(os.path.basename(named["name"])):
            modes.append(int(named["mode"], 8))
        if temp_fd and re.search(rf"close\({temp_fd}\)", line):
            temp_fd = None
    return modes


@pytest.mark.parametrize("umask", [0o000, 0o077])
@pytest.mark.parametrize("target_mode, configured", [
    (0o600, None), (0o640, None), (0o644, None), (0o400, None), (0o660, None), (0o604, None),
    (0o640, "0400"), (0o600, "0644"), (0o644, "0600"),
])
def test_temp_file_never_more_permissive_than_the_final_mode(base, umask, target_mode,
                                                             configured):
    options = {"mode": configured} if configured else {}
    scenario = Scenario(base, source_text="A=new\n", target_text="A=old\n",
                        target_mode=target_mode, options=options)
    final = int(configured, 8) if configured else target_mode
    trace = base / "trace"

    proc = subprocess.run(
        ["strace", "-f", "-o", str(trace), "-e",
         "trace=openat,fchmod,fchmodat,chmod,close,rename,renameat,renameat2",
         *command(scenario.config, scenario.lock)],
        cwd=PROJECT, env=child_env(), capture_output=True, text=True, timeout=60,
        preexec_fn=lambda: os.umask(umask), check=False,
    )

    assert proc.returncode == 0, proc.stderr
    modes = temp_modes(trace.read_text(), umask)
    assert modes, "no temp file was created"
    for mode in modes:
        assert mode & ~final == 0, f"temp file had {mode:04o}, final mode {final:04o}"
    assert stat.S_IMODE(os.stat(scenario.target).st_mode) == final


def test_temp_file_seen_by_a_watcher_is_never_more_permissive(base):
    """A thread lists the directory as fast as it can while syncs run; every temp file seen
    has a mode within the target's."""
    scenario = Scenario(base, source_text="A=1\n", target_text="A=0\n" + "PAD=x\n" * 5000,
                        target_mode=0o640)
    seen, bad, stop = [], [], threading.Event()

    def watch():
        while not stop.is_set():
            for entry in os.scandir(scenario.appdir):
                if TEMP_NAME.match(entry.name):
                    try:
                        mode = stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode)
                    except FileNotFoundError:
                        continue
                    seen.append(mode)
                    if mode & ~0o640:
                        bad.append(mode)

    watcher = threading.Thread(target=watch)
    watcher.start()
    tally = Tally()
    try:
        for index in range(scaled(30)):
            scenario.write_source(f"A={index + 1}\n")
            result = scenario.forked()
            with tally.attempt(f"sync {index}"):
                assert result.returncode == 0, failure_report(result)
    finally:
        stop.set()
        watcher.join()
    with tally.attempt("watcher"):
        assert not bad, [f"{m:04o}" for m in bad]
    tally.finish("permissions-watcher", f"{len(seen)} temp-file sightings")
    assert seen, "the watcher never saw a temp file"


def test_backups_are_0600_in_0700_directories_under_umask_000(base):
    scenario = Scenario(base, source_text="A=new\n", target_text="A=old\n", target_mode=0o644)
    nested = base / "var" / "backups" / "secretsync"
    scenario.write_config(backup_dir=nested)
    scenario.backup_dir = nested

    first = scenario.run(umask=0)
    scenario.write_source("A=newer\n")
    second = scenario.run(umask=0)
    restored = scenario.run("restore", scenario.job, umask=0)

    for result in (first, second, restored):
        assert result.returncode == 0, failure_report(result)
    files = scenario.backups()
    assert len(files) == 3
    for path in files:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
        assert os.stat(path).st_uid == 0
    assert stat.S_IMODE(os.stat(nested / scenario.job).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(nested).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(scenario.target).st_mode) == 0o644
    leftovers = [p.name for p in (nested / scenario.job).iterdir() if p not in files]
    assert leftovers == []


def test_created_target_is_0600_under_umask_000(base):
    scenario = Scenario(base, source_text="A=new\n", target_text=None, options={"create": "yes"})

    result = scenario.run(umask=0)

    assert result.returncode == 0, failure_report(result)
    assert stat.S_IMODE(os.stat(scenario.target).st_mode) == 0o600
    assert values(scenario.target) == {"A": "new"}
