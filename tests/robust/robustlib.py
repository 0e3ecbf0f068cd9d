"""Shared helpers for the robustness suite: scenarios on disk, running the command, checks.

Every run goes through the real command (`python3 -m secretsync`) in a child process, either
started fresh (``run``) or forked from the test process after importing the package once
(``run_forked``, for loops of thousands of runs). Nothing here hooks into the engine.
"""

import io
import os
import re
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values
from dotenv.parser import parse_stream

PYTHON = "/usr/bin/python3"
PROJECT = Path(__file__).resolve().parents[2]

# `make soak` sets ROBUST_SCALE (for example 10); every loop multiplies its count by it.
SCALE = max(1, int(os.environ.get("ROBUST_SCALE", "1")))

TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.secretsync-[0-9a-f]{16}\.tmp$")
BACKUP_NAME = re.compile(r"^\d{8}T\d{6}\.\d{6}Z\.env$")
LOCK_MESSAGE = "another secretsync run"


def scaled(count):
    """The number of iterations a loop runs: ``count`` in CI, more under `make soak`."""
    return count * SCALE


def command(config, lock, *args):
    """The argv of one secretsync run on ``config`` with its own lock file."""
    return [PYTHON, "-m", "secretsync", "-c", str(config), "--lock-file", str(lock), *args]


def child_env(extra=None):
    """The environment a run gets: the project on PYTHONPATH, nothing else inherited blindly."""
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONPATH": str(PROJECT),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update(extra or {})
    return env


def run(config, lock, *args, timeout=60, umask=None, env=None):
    """Run the command to completion and return the CompletedProcess (text output)."""

    def preexec():
        if umask is not None:
            os.umask(umask)

    return subprocess.run(
        command(config, lock, *args),
        cwd=PROJECT,
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec,
        check=False,
    )


def popen(argv, **kwargs):
    """Start a run (argv from ``command``) without waiting for it."""
    return subprocess.Popen(
        argv,
        cwd=PROJECT,
        env=child_env(kwargs.pop("env", None)),
        stdout=kwargs.pop("stdout", subprocess.PIPE),
        stderr=kwargs.pop("stderr", subprocess.PIPE),
        text=True,
        **kwargs,
    )


@dataclass
class Forked:
    """What a forked run left: its exit status and output."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False


def run_forked(config, lock, *args, timeout=20, workdir):
    """Run ``secretsync.cli.main`` in a forked child (the package is imported only once).

    The child arms SIGALRM, so a run that hangs dies after ``timeout`` seconds and the result
    says so (``timed_out``); the parent also kills it if the alarm is blocked.
    """
    import secretsync.cli  # noqa: F401 -- imported once in the parent, inherited by forks

    out_path = Path(workdir) / f".fork-{os.getpid()}.out"
    err_path = Path(workdir) / f".fork-{os.getpid()}.err"
    argv = ["-c", str(config), "--lock-file", str(lock), *args]
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 70
        try:
            out_fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            err_fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(out_fd, 1)
            os.dup2(err_fd, 2)
            sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), write_through=True)
            sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", closefd=False), write_through=True)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(timeout)
            try:
                code = secretsync.cli.main(argv)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:  # a traceback is a finding; keep it in the captured stderr
            import traceback

            traceback.print_exc()
            sys.stderr.flush()
            code = 71
        finally:
            os._exit(code if isinstance(code, int) else 72)
    deadline = time.monotonic() + timeout + 10
    status = None
    while status is None:
        done, raw = os.waitpid(pid, os.WNOHANG)
        if done:
            status = raw
        elif time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        else:
            time.sleep(0.002)
    timed_out = os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGALRM, signal.SIGKILL)
    code = os.waitstatus_to_exitcode(status)
    result = Forked(code, out_path.read_text(errors="replace"),
                    err_path.read_text(errors="replace"), timed_out)
    out_path.unlink()
    err_path.unlink()
    return result


def write_config(path, jobs, defaults=None):
    """Write an INI config: ``jobs`` maps a job name to its options."""
    lines = []
    if defaults:
        lines.append("[DEFAULT]")
        lines += [f"{k} = {v}" for k, v in defaults.items()]
        lines.append("")
    for name, options in jobs.items():
        lines.append(f"[{name}]")
        for key, value in options.items():
            value = str(value).replace("\n", "\n    ")
            lines.append(f"{key} = {value}")
        lines.append("")
    Path(path).write_text("\n".join(lines))


def values(path_or_bytes):
    """The bindings an application reads: ``dotenv_values(path, interpolate=False)``.

    The file is read the way python-dotenv opens a path (text mode, universal newlines: a
    lone CR inside a quoted value reads as LF), except that a leading UTF-8 BOM is dropped
    first, as the contract says it is no part of the first key (python-dotenv 0.21 itself
    would read a key "\ufeffKEY", or nothing at all for "\ufeffexport KEY=...").
    """
    if isinstance(path_or_bytes, (bytes, bytearray)):
        data = bytes(path_or_bytes)
    else:
        data = Path(path_or_bytes).read_bytes()
    text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8").read()
    # The contract: a UTF-8 BOM is not part of the file's first statement.
    text = text.removeprefix("\ufeff")
    return dict(dotenv_values(stream=io.StringIO(text), interpolate=False))


def binding_keys(text):
    """Every bound key in file order, duplicates included (to spot a doubled key)."""
    return [b.key.lstrip("\ufeff") for b in parse_stream(io.StringIO(text)) if b.key]


def temp_leftovers(directory):
    """Temp files of the engine's pattern left in ``directory``."""
    return sorted(p.name for p in Path(directory).iterdir() if TEMP_NAME.match(p.name))


def backups(backup_dir, job):
    """The backup files of ``job`` (names of the backup pattern only), oldest first."""
    directory = Path(backup_dir) / job
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if BACKUP_NAME.match(p.name))


def snapshot(path):
    """Bytes, owner, group, mode, inode and mtime of a file (for byte-identical checks)."""
    st = os.lstat(path)
    with open(path, "rb") as handle:
        data = handle.read()
    return {
        "bytes": data,
        "uid": st.st_uid,
        "gid": st.st_gid,
        "mode": stat.S_IMODE(st.st_mode),
        "ino": st.st_ino,
        "mtime_ns": st.st_mtime_ns,
    }


def walk_names(root):
    """Every file and directory name under ``root`` (to look for values in names)."""
    names = []
    for dirpath, dirnames, filenames in os.walk(root):
        names += dirnames + filenames
    return names


@dataclass
class Scenario:
    """One job laid out in a directory: source, target, backups, config, lock."""

    base: Path
    job: str = "app"
    source_text: str = ""
    target_text: str | None = ""
    options: dict = field(default_factory=dict)
    target_owner: tuple = (0, 0)
    target_mode: int = 0o640

    def __post_init__(self):
        self.base = Path(self.base)
        self.secrets = self.base / "secrets"
        self.appdir = self.base / "app"
        self.source = self.secrets / "shared.env"
        self.target = self.appdir / ".env"
        self.backup_dir = self.base / "backups"
        self.config = self.base / "secretsync.conf"
        self.lock = self.base / "lock"
        self.secrets.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.appdir.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.write_source(self.source_text)
        if self.target_text is not None:
            self.write_target(self.target_text)
        self.write_config()

    def write_config(self, **extra):
        options = {
            "source": self.source,
            "target": self.target,
            "sync": "*",
            "backup_dir": self.backup_dir,
            "keep_backups": 1000,
        }
        options.update(self.options)
        options.update(extra)
        write_config(self.config, {self.job: options})

    def write_source(self, text, mode=0o600):
        data = text if isinstance(text, bytes) else text.encode("utf-8")
        tmp = self.source.with_name(".shared.env.new")
        tmp.write_bytes(data)
        os.chmod(tmp, mode)
        os.replace(tmp, self.source)

    def write_target(self, text):
        data = text if isinstance(text, bytes) else text.encode("utf-8")
        self.target.write_bytes(data)
        os.chown(self.target, *self.target_owner)
        os.chmod(self.target, self.target_mode)

    def run(self, *args, **kwargs):
        return run(self.config, self.lock, *args, **kwargs)

    def forked(self, *args, **kwargs):
        return run_forked(self.config, self.lock, *args, workdir=self.base, **kwargs)

    def backups(self):
        return backups(self.backup_dir, self.job)

    def leftovers(self):
        return temp_leftovers(self.appdir)


def failure_report(result):
    """A short text of a run's outcome for assertion messages."""
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


class Tally:
    """Counts attempts and collects failures of a loop, so a run reports every figure.

    ``with tally.attempt(label):`` records an AssertionError raised inside as one failure and
    goes on; ``tally.finish(name)`` writes the figures (see ``record_figure``) and fails the
    test with the first failures if there were any.
    """

    def __init__(self):
        self.attempts = 0
        self.failures = []

    def attempt(self, label):
        tally = self

        class _Attempt:
            def __enter__(self):
                tally.attempts += 1

            def __exit__(self, kind, exc, tb):
                if kind is not None and issubclass(kind, AssertionError):
                    tally.failures.append(f"{label}: {exc}")
                    return True
                return False

        return _Attempt()

    def finish(self, name, note=""):
        record_figure(name, self.attempts, len(self.failures), note)
        assert not self.failures, (
            f"{len(self.failures)} of {self.attempts} attempts failed:\n"
            + "\n".join(self.failures[:10]))


def record_figure(name, attempts, failures, note=""):
    """Append one line of figures to $ROBUST_FIGURES (set by `make soak`) or the default file."""
    path = os.environ.get("ROBUST_FIGURES", "/tmp/secretsync-robust-figures.tsv")
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(f"{time.strftime('%H:%M:%S')}\t{name}\t{attempts}\t{failures}\t{note}\n")
