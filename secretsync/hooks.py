"""Run a job's ``on_change`` command after its target changed.

The command is split like a shell would split it and run without one. It learns what changed
from its environment, by key name only: a value never reaches a hook.
"""

import os
import signal
import subprocess
from typing import Sequence

from secretsync.errors import JobError

_STDERR = 2  # the process's own stderr, whatever object sys.stderr is at the moment


def hook_environment(job: str, target: str, added: Sequence[str], changed: Sequence[str],
                     removed: Sequence[str]) -> dict[str, str]:
    """The hook's environment: secretsync's own, plus the job, the target and the key names."""
    env = dict(os.environ)
    env.update(
        SECRETSYNC_JOB=job,
        SECRETSYNC_TARGET=target,
        SECRETSYNC_ADDED=" ".join(added),
        SECRETSYNC_CHANGED=" ".join(changed),
        SECRETSYNC_REMOVED=" ".join(removed),
    )
    return env


def run_hook(command: Sequence[str], env: dict[str, str], timeout: float) -> None:
    """Run ``command`` to completion within ``timeout`` seconds, or raise JobError.

    It runs in a session of its own so that a timeout kills everything it started. Its output
    goes to secretsync's stderr, keeping stdout for secretsync's report.
    """
    try:
        process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL,
                                   stdout=_STDERR, start_new_session=True)
    except FileNotFoundError:
        raise JobError(f"on_change: {command[0]}: command not found") from None
    except PermissionError:
        raise JobError(f"on_change: {command[0]}: permission denied") from None
    except OSError as error:
        raise JobError(f"on_change: {command[0]}: cannot run: {error.strerror}") from None
    try:
        status = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
        raise JobError(f"on_change: {command[0]}: still running after {timeout:g} s; killed") \
            from None
    if status != 0:
        how = f"killed by signal {-status}" if status < 0 else f"exited with status {status}"
        raise JobError(f"on_change: {command[0]}: {how}")
