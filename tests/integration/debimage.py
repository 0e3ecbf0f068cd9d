"""Throwaway Debian systems booted with systemd-nspawn, for the package's integration test.

A Debian root file system per suite (minbase plus systemd, dbus, man-db and passwd, nothing
secretsync depends on) is built once with mmdebstrap and cached in tests/.cache/. Each boot
uses it read-only under a tmpfs overlay (--volatile=overlay), so a test never changes it.

Booting follows ../shared/notes/booting-systemd.md: on hosts whose PID 1 is not systemd,
nspawn runs in a cgroup of its own, in a private mount namespace with a tmpfs on
/run/systemd/nspawn, with --register=no --keep-unit and a unified cgroup hierarchy for the
container. A runner unit bind-mounted into the container runs the test script, which writes
its results to /out.

Run as a script (`make image`) it builds the images for the suites named on its command line.
"""

import glob
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "tests" / ".cache"

# What the image holds besides minbase: an init and a bus to boot, man-db to open the man
# pages, passwd to add the test's system user. Not python3, python3-dotenv or python3-systemd:
# installing the package must pull those from the archive.
INCLUDE = ("systemd", "systemd-sysv", "dbus", "man-db", "passwd")

# A cached image older than this is rebuilt, so that the packages it starts from stay close to
# the archive's.
MAX_IMAGE_AGE = 14 * 24 * 3600

CGROUP_ROOTS = ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified")


def host_mirror() -> str:
    """Return the Debian archive URI the host's apt uses (not the security archive).

    SECRETSYNC_TEST_MIRROR overrides it.
    """
    if os.environ.get("SECRETSYNC_TEST_MIRROR"):
        return os.environ["SECRETSYNC_TEST_MIRROR"].rstrip("/")

    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        for stanza in Path(path).read_text().split("\n\n"):
            fields = {}
            for line in stanza.splitlines():
                if line.startswith("#") or line[:1].isspace() or ":" not in line:
                    continue
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.split()
            suites = fields.get("suites", [])
            if ("deb" in fields.get("types", []) and "main" in fields.get("components", [])
                    and any(not suite.endswith("-security") for suite in suites)
                    and fields.get("enabled", ["yes"]) != ["no"] and fields.get("uris")):
                return fields["uris"][0].rstrip("/")

    for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
        if not os.path.exists(path):
            continue
        for line in Path(path).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if not line.startswith("deb "):
                continue
            rest = line[4:].strip()
            if rest.startswith("["):
                rest = rest.split("]", 1)[1]
            words = rest.split()
            if len(words) >= 3 and not words[1].endswith("-security") and "main" in words[2:]:
                return words[0].rstrip("/")

    raise RuntimeError("no Debian archive found in the host's apt sources; "
                       "set SECRETSYNC_TEST_MIRROR")


def ensure_tools() -> None:
    """Install mmdebstrap and systemd-nspawn from Debian's archive if they are missing."""
    ensure_packages({"mmdebstrap": "mmdebstrap", "systemd-nspawn": "systemd-container"})


def ensure_packages(tools: dict) -> None:
    """Install from Debian's archive the package of each tool (name: package) not on PATH."""
    missing = [package for tool, package in tools.items()
               if shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin") is None]
    if missing:
        subprocess.run(["apt-get", "update"], check=True)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing],
                       check=True, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def image(suite: str, log=print) -> Path:
    """Return the cached root file system for suite, building it first if needed."""
    ensure_tools()
    mirror = host_mirror()
    root = CACHE / f"rootfs-{suite}"
    stamp = CACHE / f"rootfs-{suite}.stamp"
    key = f"{suite} {mirror} {','.join(INCLUDE)}\n"

    if (root.is_dir() and stamp.exists() and stamp.read_text() == key
            and time.time() - stamp.stat().st_mtime < MAX_IMAGE_AGE):
        return root

    CACHE.mkdir(parents=True, exist_ok=True)
    building = CACHE / f"rootfs-{suite}.building"
    for stale in (building, root):
        if stale.exists():
            shutil.rmtree(stale)
    stamp.unlink(missing_ok=True)

    started = time.monotonic()
    subprocess.run(
        ["mmdebstrap", "--quiet", "--variant=minbase", "--include=" + ",".join(INCLUDE),
         "--aptopt=Acquire::Retries \"3\"", suite, str(building),
         f"deb {mirror} {suite} main"],
        check=True, env=dict(os.environ, PATH="/usr/sbin:/usr/bin:/sbin:/bin"))
    building.rename(root)
    stamp.write_text(key)
    log(f"built {root} from {mirror} in {time.monotonic() - started:.0f} s")
    return root


def _own_cgroups(name: str) -> list:
    """Create a cgroup called name in each hierarchy nspawn uses; return their paths."""
    paths = []
    roots = [r for r in CGROUP_ROOTS if os.path.isdir(r)]
    if not roots and os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        roots = ["/sys/fs/cgroup"]  # a host with only the unified hierarchy
    for root in roots:
        path = os.path.join(root, name)
        os.makedirs(path, exist_ok=True)
        paths.append(path)
    return paths


def _remove_cgroups(paths: list) -> None:
    """Kill what is left in the cgroups paths (and below) and remove them."""
    for _ in range(50):
        busy = False
        for top in paths:
            if not os.path.isdir(top):
                continue
            for directory, _subdirs, _files in os.walk(top, topdown=False):
                try:
                    pids = Path(directory, "cgroup.procs").read_text().split()
                except OSError:
                    pids = []
                for pid in pids:
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                try:
                    os.rmdir(directory)
                except OSError:
                    busy = True
        if not busy:
            return
        time.sleep(0.1)


def boot(root: Path, name: str, binds: dict, ro_binds: dict, runner_unit: Path,
         timeout: int = 240) -> subprocess.CompletedProcess:
    """Boot root with the runner unit pulled in; return nspawn's result once it exits.

    binds and ro_binds map host paths to container paths. The runner ends the container with
    "systemctl exit N"; timeout (seconds) ends a hung one.
    """
    nspawn = [
        "systemd-nspawn", "--quiet", "--boot", f"--directory={root}", "--volatile=overlay",
        "--register=no", "--keep-unit", "--console=read-only", f"--machine={name}",
        f"--bind-ro={runner_unit}:/etc/systemd/system/runner.service",
    ]
    nspawn += [f"--bind={host}:{guest}" for host, guest in binds.items()]
    nspawn += [f"--bind-ro={host}:{guest}" for host, guest in ro_binds.items()]
    nspawn += ["systemd.mask=console-getty.service", "systemd.wants=runner.service"]

    os.makedirs("/run/systemd/nspawn", exist_ok=True)
    command = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               'mount -t tmpfs tmpfs /run/systemd/nspawn && exec "$@"', "sh",
               "timeout", "--kill-after=10", str(timeout), *nspawn]

    cgroups = _own_cgroups(f"secretsync-test-{name}-{os.getpid()}")

    def enter_cgroups():
        for path in cgroups:
            with open(os.path.join(path, "cgroup.procs"), "w") as procs:
                procs.write(str(os.getpid()))

    env = dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1",
               PATH="/usr/sbin:/usr/bin:/sbin:/bin")
    try:
        return subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, errors="replace", env=env, preexec_fn=enter_cgroups)
    finally:
        _remove_cgroups(cgroups)


if __name__ == "__main__":
    for suite_name in sys.argv[1:] or ["bookworm"]:
        image(suite_name)
