"""on_change: run only after a real change, with key names in its environment, bounded."""

import os
import time

import pytest

from sandbox import snapshot


def _env_file(path):
    env = {}
    for entry in path.read_bytes().split(b"\0"):
        if entry:
            key, _, value = entry.decode().partition("=")
            env[key] = value
    return env


def _hook_dumping_env(box):
    dump = box.root / "hook-env"
    return dump, f"/bin/sh -c 'env -0 > {dump}'"


def test_hook_runs_after_a_change_with_job_target_and_key_names(box):
    dump, hook = _hook_dumping_env(box)
    box.write_source("API_A=new\nAPI_B=b\nAPI_C=c\n")
    box.write_target("API_A=old\nAPI_GONE=x\nAPI_OLD=y\n")
    box.configure({"app": box.job(on_change=hook, remove_missing="yes")})

    result = box.run()

    assert result.rc == 0, result.err
    env = _env_file(dump)
    assert env["SECRETSYNC_JOB"] == "app"
    assert env["SECRETSYNC_TARGET"] == str(box.target)
    assert env["SECRETSYNC_ADDED"].split() == ["API_B", "API_C"]
    assert env["SECRETSYNC_CHANGED"].split() == ["API_A"]
    assert env["SECRETSYNC_REMOVED"].split() == ["API_GONE", "API_OLD"]
    for value in ("new", "b", "c", "old", "x", "y"):
        assert value not in env.values()


def test_hook_sees_the_new_target_already_in_place(box):
    copy = box.root / "seen"
    box.write_source("API_A=new\n")
    box.write_target("API_A=old\n")
    box.configure({"app": box.job(on_change=f"cp {box.target} {copy}")})

    assert box.run().rc == 0

    assert copy.read_text() == "API_A=new\n"


def test_hook_runs_without_a_shell_and_its_output_stays_off_stdout(box):
    box.write_source("API_A=new\n")
    box.write_target("API_A=old\n")
    box.configure({"app": box.job(on_change="echo hook-said '$HOME' \"a b\"")})

    result = box.run()

    assert result.rc == 0
    assert "hook-said" not in result.out
    assert "hook-said $HOME a b" in result.err_lines


@pytest.mark.parametrize("args", [(), ("--dry-run",)])
def test_hook_not_run_without_a_real_change(box, args):
    marker = box.root / "ran"
    box.write_source("API_A=new\n")
    box.write_target("API_A=old\n" if args else "API_A=new\n")
    box.configure({"app": box.job(on_change=f"touch {marker}")})

    assert box.run(*args).rc == 0

    assert not marker.exists()


def test_hook_not_run_when_the_job_fails(box):
    marker = box.root / "ran"
    box.write_source("API_A=new\nAPI_B='broken\n")
    box.write_target("API_A=old\n")
    box.configure({"app": box.job(on_change=f"touch {marker}")})

    assert box.run().rc == 1

    assert not marker.exists()


def test_hook_timeout_kills_it_and_fails_the_job(box):
    pids = box.root / "pids"
    hook = f"/bin/sh -c 'sleep 60 & echo $! > {pids}; echo $$ >> {pids}; wait'"
    box.write_source("API_A=new\n")
    box.write_target("API_A=old\n")
    other = box.root / "app" / "other.env"
    box.write_target("API_A=old\n", path=other)
    box.configure({"app": box.job(on_change=hook, on_change_timeout="0.5"),
                   "other": box.job(target=str(other))})
    start = time.monotonic()

    result = box.run()

    assert time.monotonic() - start < 20
    assert result.rc == 1
    failed = [x for x in result.out_lines if x.startswith("  failed:")]
    assert len(failed) == 1 and "on_change" in failed[0]
    assert box.target.read_text() == "API_A=new\n"
    assert other.read_text() == "API_A=new\n"
    for pid in map(int, pids.read_text().split()):
        deadline = time.monotonic() + 5
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            stat = open(f"/proc/{pid}/stat").read() if os.path.exists(f"/proc/{pid}") else ""
            if ") Z " in stat:
                break
            time.sleep(0.05)
        alive = os.path.exists(f"/proc/{pid}") and ") Z " not in open(f"/proc/{pid}/stat").read()
        assert not alive, pid


@pytest.mark.parametrize("hook, words", [
    ("/nonexistent/restart-app --now", ["/nonexistent/restart-app", "not found"]),
    ("no-such-command-secretsync", ["no-such-command-secretsync", "not found"]),
    ("/bin/sh -c 'exit 7'", ["/bin/sh", "7"]),
    ("{root}/not-executable", ["not-executable", "permission denied"]),
])
def test_hook_that_cannot_run_or_fails_is_a_clean_failure_line(box, hook, words):
    box.write_source("API_A=new\n")
    box.write_target("API_A=old\n")
    (box.root / "not-executable").write_text("#!/bin/sh\n")
    os.chmod(box.root / "not-executable", 0o644)
    box.configure({"app": box.job(on_change=hook.format(root=box.root))})

    result = box.run()

    assert result.rc == 1
    assert "Traceback" not in result.err
    failed = [x for x in result.out_lines if x.startswith("  failed:")]
    assert len(failed) == 1
    for word in words:
        assert word in failed[0].lower()
    assert box.target.read_text() == "API_A=new\n"
    assert len(box.backup_files()) == 1


def test_hook_of_a_restore_runs_with_the_restored_key_names(box):
    dump, hook = _hook_dumping_env(box)
    box.write_source("API_A=new\n")
    box.write_target("API_A=old\nAPI_X=1\n")
    box.configure({"app": box.job(on_change=hook)})
    assert box.run().rc == 0
    dump.unlink()
    before = snapshot(box.target)

    result = box.run("restore", "app")

    assert result.rc == 0, result.err
    assert snapshot(box.target) != before
    env = _env_file(dump)
    assert env["SECRETSYNC_JOB"] == "app"
    assert env["SECRETSYNC_CHANGED"].split() == ["API_A"]
