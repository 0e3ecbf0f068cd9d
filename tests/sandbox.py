"""Helpers and fixtures of the engine's suite: a sandbox with a source, a target and a config.

The command runs as a user runs it, ``/usr/bin/python3 -m secretsync`` in a subprocess, or
in-process through ``secretsync.cli.main`` where a test needs the journal fields the handler
would send.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYTHON = "/usr/bin/python3"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@dataclass
class Result:
    """What a run of the command showed: exit status, stdout and stderr, journal entries."""

    rc: int
    out: str
    err: str
    journal: list = field(default_factory=list)

    @property
    def out_lines(self) -> list[str]:
        return self.out.splitlines()

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()

    def keys(self, label: str) -> list[str]:
        """Key names stdout lists under ``label`` (add, change, remove, stale), in order."""
        found = []
        for line in self.out_lines:
            words = line.split()
            if line.startswith("  ") and len(words) >= 2 and words[0] == label:
                found.append(words[1])
        return found


def ini(sections: dict[str, dict[str, str]]) -> str:
    """INI text for ``sections`` (a multi-line value is indented on its continuation lines)."""
    lines = []
    for name, options in sections.items():
        lines.append(f"[{name}]")
        for option, value in options.items():
            value = str(value).replace("\n", "\n    ")
            lines.append(f"{option} = {value}")
        lines.append("")
    return "\n".join(lines)


class Sandbox:
    """A directory holding one shared source, one app target, backups, the lock and a config."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "shared").mkdir(mode=0o700)
        (root / "app").mkdir(mode=0o755)
        self.source = root / "shared" / "secrets.env"
        self.target = root / "app" / ".env"
        self.backups = root / "backups"
        self.lock = root / "run" / "secretsync.lock"
        self.config = root / "secretsync.conf"

    # files

    def write_source(self, content, mode: int = 0o600, path: Path | None = None) -> Path:
        path = path or self.source
        data = content.encode("utf-8") if isinstance(content, str) else content
        path.write_bytes(data)
        os.chmod(path, mode)
        return path

    def write_target(self, content, mode: int = 0o640, path: Path | None = None) -> Path:
        path = path or self.target
        data = content.encode("utf-8") if isinstance(content, str) else content
        path.write_bytes(data)
        os.chmod(path, mode)
        return path

    def job(self, **options) -> dict[str, str]:
        """Options of a job on this sandbox's files; keyword arguments add or override."""
        base = {
            "source": str(self.source),
            "target": str(self.target),
            "sync": "API_*",
            "backup_dir": str(self.backups),
        }
        base.update({k: v for k, v in options.items() if v is not None})
        for k in [k for k, v in options.items() if v is None]:
            base.pop(k, None)
        return base

    def configure(self, jobs: dict[str, dict[str, str]] | None = None, text: str | None = None,
                  path: Path | None = None) -> Path:
        """Write the config: ``text`` as it is, or ``jobs`` (default one job "app")."""
        path = path or self.config
        if text is None:
            text = ini(jobs if jobs is not None else {"app": self.job()})
        path.write_text(text, encoding="utf-8")
        return path

    def backup_files(self, job: str = "app") -> list[Path]:
        directory = self.backups / job
        return sorted(directory.iterdir()) if directory.exists() else []

    # running

    def command(self, *args: str, config: Path | None = None) -> list[str]:
        return [PYTHON, "-m", "secretsync", "-c", str(config or self.config),
                "--lock-file", str(self.lock), *args]

    def run(self, *args: str, config: Path | None = None, user: str | None = None,
            timeout: float = 60, env: dict | None = None) -> Result:
        """Run the command in a subprocess, from the repository."""
        cmd = self.command(*args, config=config)
        if user is not None:
            cmd = ["setpriv", f"--reuid={user}", f"--regid={user_group(user)}",
                   "--clear-groups", *cmd]
        full_env = dict(os.environ)
        full_env.pop("JOURNAL_STREAM", None)
        full_env["PYTHONDONTWRITEBYTECODE"] = "1"
        if env:
            full_env.update(env)
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                              env=full_env)
        return Result(done.returncode, done.stdout, done.stderr)


def user_group(user: str) -> str:
    import grp
    import pwd

    return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name


@pytest.fixture
def box(tmp_path):
    """A fresh sandbox in the test's temp directory."""
    return Sandbox(tmp_path)


@pytest.fixture
def open_box():
    """A sandbox under /tmp that every user can traverse (for runs as a non-root user)."""
    root = Path(tempfile.mkdtemp(prefix="secretsync-core-", dir="/tmp"))
    root.chmod(0o755)
    yield Sandbox(root)
    shutil.rmtree(root, ignore_errors=True)


class Journal:
    """Stands in for systemd.journal.send: records every (MESSAGE, fields) sent."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, dict]] = []

    def __call__(self, message, /, **fields) -> None:
        # Positional-only: the handler passes the record's attributes, "message" among them.
        self.entries.append((message, fields))

    def with_id(self, message_id: str) -> list[tuple[str, dict]]:
        return [(m, f) for m, f in self.entries if f.get("MESSAGE_ID") == message_id]


@pytest.fixture
def inproc(monkeypatch, capsys):
    """Run ``secretsync.cli.main`` in-process on a sandbox, capturing output and journal."""
    import secretsync.report

    def run(sandbox: Sandbox, *args: str, config: Path | None = None) -> Result:
        journal = Journal()
        monkeypatch.setattr(secretsync.report, "JOURNAL_SENDER", journal)
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
        from secretsync.cli import main

        capsys.readouterr()
        rc = main(["-c", str(config or sandbox.config), "--lock-file", str(sandbox.lock),
                   *args])
        captured = capsys.readouterr()
        return Result(rc, captured.out, captured.err, journal.entries)

    return run


def snapshot(path: Path) -> tuple[bytes, int, int, int, int]:
    """Bytes, mtime, mode, owner and group of a file: what "untouched" means."""
    st = os.stat(path)
    return path.read_bytes(), st.st_mtime_ns, st.st_mode, st.st_uid, st.st_gid
