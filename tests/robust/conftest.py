"""Fixtures of the robustness suite: open temp dirs, a hostile system user, mounts."""

import grp
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

HOSTILE_USER = "secretsync-test"


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="the robustness suite runs as root (chown, mount, mknod)")
        for item in items:
            if "tests/robust" in str(item.fspath):
                item.add_marker(skip)


@pytest.fixture
def base():
    """A fresh directory under /tmp that any user can traverse (0755), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="secretsync-robust-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def hostile_user():
    """(uid, gid) of the non-root system user the hostile-owner tests run as.

    Created with useradd --system on first use and kept (the name is fixed, so reruns reuse it).
    """
    try:
        entry = pwd.getpwnam(HOSTILE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", HOSTILE_USER],
            check=True,
        )
        entry = pwd.getpwnam(HOSTILE_USER)
    grp.getgrgid(entry.pw_gid)
    return entry.pw_uid, entry.pw_gid


@pytest.fixture
def tmpfs(base):
    """Mount a small tmpfs; the factory takes the mount's options, unmounted afterwards."""
    mounts = []

    def mount(name, options):
        point = base / name
        point.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], check=True)
        mounts.append(point)
        point.chmod(0o755)
        return point

    yield mount
    for point in reversed(mounts):
        subprocess.run(["umount", "-l", str(point)], check=False)
