"""Crash: SIGKILL at every step of a sync or restore, and at random moments on a large target.

No hook in the product: strace injects SIGKILL on entry to the N-th call of one system call
(`-e inject=SYSCALL:signal=SIGKILL:when=N`), for every call a reference run made after it
started reading its configuration. After each kill the target is exactly the old or exactly
the new file with the right owner and mode, a new target always has a backup of the old one,
and the next run cleans up and finishes with exit 0.
"""

import os
import random
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from robustlib import (
    BACKUP_NAME, PROJECT, SCALE, Scenario, Tally, child_env, command, failure_report, popen,
    scaled, snapshot, temp_leftovers, values,
)

# The calls a sync can be interrupted at. CI covers the ones that change files or state and
# the opens; `make soak` (ROBUST_SCALE > 1) adds reads, stats and directory listings.
WRITE_SIDE = [
    "openat", "write", "pwrite64", "fsync", "fdatasync", "fchown", "fchownat", "fchmod",
    "fchmodat", "rename", "renameat", "renameat2", "unlink", "unlinkat", "ftruncate", "mkdir",
    "mkdirat", "flock", "linkat", "close",
]
READ_SIDE = ["read", "pread64", "newfstatat", "fstat", "getdents64", "lseek", "readlinkat"]
SYSCALLS = WRITE_SIDE + (READ_SIDE if SCALE > 1 else [])

TRACE_LINE = re.compile(r"^(?P<pid>\d+)\s+(?P<name>\w+)\((?P<args>.*)")

OLD_OWNER = (4242, 4243)
SOURCE = "".join(f"KEY_{i:03d}=new-value-{i}\n" for i in range(40)) + "ADDED=fresh\n"
TARGET = "# app settings\nLOCAL=1\n" + "".join(
    f"KEY_{i:03d}=old-value-{i}\n" for i in range(0, 40, 2)
) + "\nexport KEY_001='quoted old'\n"


OLDER = b"# an older backup\n"
KEEP = 2


def make_scenario(path, configured, pruning=False):
    """The job of the every-step tests; ``pruning``: 3 older backups and keep_backups = 2."""
    options = {"owner": 4300, "group": 4301, "mode": "0604"} if configured else {}
    if pruning:
        options["keep_backups"] = KEEP
    scenario = Scenario(path, source_text=SOURCE, target_text=TARGET, options=options,
                        target_owner=OLD_OWNER, target_mode=0o640)
    if pruning:
        job_dir = scenario.backup_dir / scenario.job
        job_dir.mkdir(parents=True, mode=0o700)
        scenario.backup_dir.chmod(0o700)
        for index in range(3):
            older = job_dir / f"2020010{index + 1}T000000.000000Z.env"
            older.write_bytes(OLDER)
            older.chmod(0o600)
    return scenario


def strace_run(scenario, argv_tail, trace_file=None, inject=None, timeout=60):
    """Run secretsync under strace; return (returncode, stdout, stderr)."""
    argv = ["strace", "-f", "-o", str(trace_file or os.devnull), "-e",
            "trace=" + ",".join(SYSCALLS)]
    if inject:
        name, nth = inject
        argv += ["-e", f"inject={name}:signal=SIGKILL:when={nth}"]
    argv += command(scenario.config, scenario.lock, *argv_tail)
    proc = subprocess.run(argv, cwd=PROJECT, env=child_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)
    return proc


def steps_of(trace_file, marker):
    """(syscall, N) for every call of the main process from the first one naming ``marker``."""
    counts = Counter()
    steps = []
    started = False
    main_pid = None
    for line in Path(trace_file).read_text().splitlines():
        match = TRACE_LINE.match(line)
        if not match or "resumed>" in line:
            continue
        pid, name = match["pid"], match["name"]
        main_pid = main_pid or pid
        if pid != main_pid:
            continue
        counts[name] += 1
        started = started or marker in match["args"]
        if started and (SCALE > 1 or not _report_or_import(name, match["args"])):
            steps.append((name, counts[name]))
    return steps


def _report_or_import(name, args):
    """A call that only prints the report or imports a module (CI skips those steps)."""
    if name == "write" and args.split(",", 1)[0] in ("1", "2"):
        return True
    return name == "openat" and re.search(r'\.pyc?"', args) is not None


def expected_outcomes(base, configured, argv_tail, pruning=False):
    """Old and new target bytes/owner/mode of an uninterrupted run, and its steps."""
    reference = make_scenario(base / "reference", configured, pruning)
    old = snapshot(reference.target)
    trace = base / "reference.trace"
    proc = strace_run(reference, argv_tail, trace_file=trace)
    assert proc.returncode == 0, proc.stderr
    new = snapshot(reference.target)
    assert new["bytes"] != old["bytes"]
    return old, new, steps_of(trace, str(reference.config))


def check_after_kill(scenario, old, new, label):
    """The target is exactly old or exactly new; owner and mode follow; backups are whole."""
    now = snapshot(scenario.target)
    assert now["bytes"] in (old["bytes"], new["bytes"]), f"{label}: partial target"
    state = old if now["bytes"] == old["bytes"] else new
    assert (now["uid"], now["gid"], now["mode"]) == (state["uid"], state["gid"], state["mode"]), (
        f"{label}: owner/mode {now['uid']}:{now['gid']} {now['mode']:o}")
    backups = scenario.backups()
    for backup in backups:
        assert backup.read_bytes() in (old["bytes"], OLDER), f"partial backup {backup.name}"
    if state is new:
        assert any(b.read_bytes() == old["bytes"] for b in backups), (
            f"{label}: target replaced without a backup")
    return state is new


def check_recovery(scenario, old, new, label):
    """The next, uninterrupted run cleans up and finishes."""
    result = scenario.forked()
    assert result.returncode == 0, f"{label}: {failure_report(result)}"
    now = snapshot(scenario.target)
    assert now["bytes"] == new["bytes"], label
    assert (now["uid"], now["gid"], now["mode"]) == (new["uid"], new["gid"], new["mode"]), label
    assert temp_leftovers(scenario.appdir) == [], f"{label}: temp file left after the next run"
    job_dir = scenario.backup_dir / scenario.job
    stray = [p.name for p in job_dir.iterdir() if not BACKUP_NAME.match(p.name)]
    assert stray == [], f"{label}: stray files in the backup directory: {stray}"
    kept = scenario.backups()
    assert any(b.read_bytes() == old["bytes"] for b in kept), "no backup of the old target"
    assert all(b.read_bytes() in (old["bytes"], OLDER) for b in kept), "partial backup"
    if any(b.read_bytes() == OLDER for b in kept) or len(kept) > 2:
        assert len(kept) <= KEEP, f"{len(kept)} backups kept, keep_backups = {KEEP}"
        assert kept[-1].read_bytes() == old["bytes"], "the newest backup was pruned"


@pytest.mark.parametrize("configured, pruning", [(False, False), (True, False), (False, True)],
                         ids=["keep_owner", "configured_owner", "pruning_backups"])
def test_sigkill_at_every_step_of_a_sync_leaves_old_or_new(base, configured, pruning):
    old, new, steps = expected_outcomes(base, configured, [], pruning)
    assert len(steps) > 10, steps
    tally = Tally()
    outcomes_new = not_reached = 0
    for index, step in enumerate(steps):
        scenario = make_scenario(base / f"run{index}", configured, pruning)
        proc = strace_run(scenario, [], inject=step)
        label = f"kill at {step[0]} #{step[1]}"
        if proc.returncode == 0:
            not_reached += 1  # this run made fewer such calls than the reference run
            continue
        with tally.attempt(label):
            assert proc.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), (
                f"exit {proc.returncode} {proc.stderr}")
            outcomes_new += check_after_kill(scenario, old, new, label)
            check_recovery(scenario, old, new, label)
        subprocess.run(["rm", "-rf", str(scenario.base)], check=True)
    name = "crash-every-step-" + ("pruning" if pruning else "configured-owner" if configured
                                  else "keep-owner")
    tally.finish(name, f"{len(steps)} steps, {outcomes_new} kills after the rename, "
                       f"{not_reached} not reached")
    assert tally.attempts >= len(steps) * 3 // 4
    assert 0 < outcomes_new < tally.attempts  # kills came both before and after the rename


def test_sigkill_at_every_step_of_a_restore_leaves_old_or_new(base):
    """restore replaces the target the same way: back up the current file, then rename."""
    reference = make_scenario(base / "reference", False)
    assert reference.run().returncode == 0
    synced = snapshot(reference.target)
    original = reference.backups()[0].read_bytes()
    trace = base / "restore.trace"
    proc = strace_run(reference, ["restore", reference.job], trace_file=trace)
    assert proc.returncode == 0, proc.stderr
    assert reference.target.read_bytes() == original
    steps = steps_of(trace, str(reference.config))
    tally = Tally()
    restored = 0
    for index, step in enumerate(steps):
        scenario = make_scenario(base / f"run{index}", False)
        assert scenario.run().returncode == 0
        first_backup = scenario.backups()[0]
        proc = strace_run(scenario, ["restore", scenario.job], inject=step)
        if proc.returncode == 0:
            continue
        label = f"restore killed at {step[0]} #{step[1]}"
        with tally.attempt(label):
            now = snapshot(scenario.target)
            assert now["bytes"] in (synced["bytes"], original), "partial target"
            assert (now["uid"], now["gid"], now["mode"]) == (
                synced["uid"], synced["gid"], synced["mode"]), "owner/mode"
            later = [b for b in scenario.backups() if b != first_backup]
            assert all(b.read_bytes() == synced["bytes"] for b in later), "partial backup"
            if now["bytes"] == original:
                restored += 1
                assert later, "restored without backing up the current target"
            assert first_backup.read_bytes() == original, "the backup itself changed"
            again = scenario.run("restore", scenario.job, backups_arg(first_backup))
            assert again.returncode == 0, failure_report(again)
            assert scenario.target.read_bytes() == original
            assert temp_leftovers(scenario.appdir) == [], "temp file left after the next run"
        subprocess.run(["rm", "-rf", str(scenario.base)], check=True)
    tally.finish("crash-every-step-restore", f"{len(steps)} steps, {restored} after the rename")
    assert tally.attempts >= len(steps) // 2


def backups_arg(backup):
    """How `restore JOB BACKUP` names a backup: its file name."""
    return backup.name


def large_pair(rng):
    """Two source versions and a target of ~20,000 lines; syncing one changes ~600 keys."""
    keys = [f"APP_SETTING_{i:05d}" for i in range(20_000)]
    target = "".join(
        (f"# section {i}\n" if i % 500 == 0 else "") + f"{k}=local-{i}\n"
        for i, k in enumerate(keys)
    )
    managed = rng.sample(keys, 600)
    sources = [
        "".join(f"{k}=version-{v}-{rng.getrandbits(64):016x}\n" for k in managed)
        + f"NEW_KEY_{v}=added\n"
        for v in ("a", "b")
    ]
    return sources, target


def test_sigkill_at_random_moments_on_a_large_target(base):
    rng = random.Random(int(os.environ.get("ROBUST_SEED", "1")))
    sources, target = large_pair(rng)
    scenario = Scenario(base, source_text=sources[0], target_text=target,
                        target_owner=OLD_OWNER, target_mode=0o640,
                        options={"sync": "APP_SETTING_* NEW_KEY_*"})
    start = time.monotonic()
    assert scenario.run().returncode == 0
    duration = time.monotonic() - start
    tally = Tally()
    killed_before = killed_after = completed = 0
    for attempt in range(scaled(25)):
        scenario.write_source(sources[(attempt + 1) % 2])
        old = snapshot(scenario.target)
        backups_before = set(scenario.backups())
        proc = popen(command(scenario.config, scenario.lock), stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, duration * 1.1))
        proc.kill()
        code = proc.wait(timeout=30)
        with tally.attempt(f"random kill {attempt} (exit {code})"):
            now = snapshot(scenario.target)
            src = values(scenario.source)
            new_backups = set(scenario.backups()) - backups_before
            for backup in new_backups:
                assert backup.read_bytes() == old["bytes"], "partial backup"
            if now["bytes"] == old["bytes"]:
                killed_before += code != 0
                completed += code == 0
            else:
                got = values(now["bytes"])
                assert all(got.get(k) == v for k, v in src.items()), "partial target"
                assert len(now["bytes"].splitlines()) >= 20_000, "lines lost"
                assert new_backups, "changed without a backup"
                completed += code == 0
                killed_after += code != 0
            assert (now["uid"], now["gid"], now["mode"]) == (*OLD_OWNER, 0o640), "owner/mode"

            recovery = scenario.forked(timeout=60)
            assert recovery.returncode == 0, failure_report(recovery)
            assert temp_leftovers(scenario.appdir) == [], "temp file left after the next run"
            job_dir = scenario.backup_dir / scenario.job
            stray = [p.name for p in job_dir.iterdir() if not BACKUP_NAME.match(p.name)]
            assert stray == [], f"stray files in the backup directory: {stray}"
            got = values(scenario.target)
            assert all(got.get(k) == v for k, v in src.items()), "next run did not finish"
    tally.finish("crash-random-large", f"killed before rename {killed_before}, after "
                 f"{killed_after}, finished before the kill {completed}")
    assert killed_before + killed_after > tally.attempts // 2
