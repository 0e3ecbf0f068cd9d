"""Hostile owner: the app's user owns the target's directory (and its parent) and fights back.

While root runs syncs (and now and then a restore) in a loop, a process running as a non-root
system user keeps swapping the target for a symlink to a root-only file, a hard link to it, a
FIFO, a device node, or swaps the directory itself for a symlink to a root-owned directory.
Root-owned sentinel files must stay byte-identical with their owner and mode, no backup may
hold their bytes (or a device's), no attacker-readable file may hold them, and no run may hang.
"""

import os
import random
import re
import secrets
import stat
import time
from collections import Counter

import pytest

from robustlib import Scenario, Tally, scaled, snapshot, values

ATTACKS = ["symlink", "hardlink", "fifo", "device", "directory", "mixed"]


class Layout:
    """The files of one hostile-owner scenario; see the module docstring."""

    def __init__(self, base, uid, gid, links):
        self.base = base
        self.marker = f"ROOT_ONLY_{secrets.token_hex(12)}"
        self.uid, self.gid = uid, gid

        self.private = base / "root-only"
        self.private.mkdir(mode=0o700)
        self.sentinel = self.private / "sentinel.env"
        self.sentinel.write_text(f"API_TOKEN=root-{self.marker}\nSETTING=x\n")
        self.sentinel.chmod(0o600)
        self.sentinel_ino = os.stat(self.sentinel).st_ino

        # A root-owned directory holding a root-owned .env: the target of the directory swap.
        self.rootdir = base / "rootdir"
        self.rootdir.mkdir(mode=0o755)
        self.root_env = self.rootdir / ".env"
        self.root_env.write_text(f"API_TOKEN=rootdir-{self.marker}\nSETTING=y\n")
        self.root_env.chmod(0o600)

        self.home = base / "home"  # the grandparent, owned by the attacker too
        self.home.mkdir(mode=0o755)
        os.chown(self.home, uid, gid)
        self.scenario = Scenario(base / "job", source_text="API_TOKEN=a\nSETTING=1\n",
                                 target_text=None, options={"sync": "API_TOKEN SETTING"})
        self.appdir = self.home / "app"
        self.appdir.mkdir(mode=0o755)
        os.chown(self.appdir, uid, gid)
        self.target = self.appdir / ".env"
        self.scenario.appdir, self.scenario.target = self.appdir, self.target
        self.scenario.target_owner, self.scenario.target_mode = (uid, gid), 0o640
        self.scenario.write_target("API_TOKEN=old\nSETTING=0\n")
        self.scenario.write_config(target=self.target)

        # Made by root where the user may rename them but could not have created them:
        # protected_hardlinks stops the user linking a root-only file, and mknod needs root.
        for index in range(links):
            os.link(self.sentinel, self.appdir / f".hl{index}")
        for index in range(50):
            os.mknod(self.appdir / f".dev{index}", 0o666 | stat.S_IFCHR, os.makedev(1, 5))
        self.protected = [self.sentinel, self.root_env]
        self.before = {path: snapshot(path) for path in self.protected}

    def check_protected(self):
        for path in self.protected:
            now = snapshot(path)
            want = self.before[path]
            for key in ("bytes", "uid", "gid", "mode", "mtime_ns"):
                assert now[key] == want[key], f"{path} {key} changed"
        assert sorted(p.name for p in self.rootdir.iterdir()) == [".env"], "file in rootdir"
        assert sorted(p.name for p in self.private.iterdir()) == ["sentinel.env"]

    def check_no_root_bytes_escaped(self):
        """No backup and no attacker-reachable file (other than the links) holds root bytes."""
        sentinel_ino = os.stat(self.sentinel).st_ino
        for top in (self.scenario.backup_dir, self.home):
            for dirpath, _, filenames in os.walk(top):
                for name in filenames:
                    path = os.path.join(dirpath, name)
                    st = os.lstat(path)
                    if not stat.S_ISREG(st.st_mode) or st.st_ino == sentinel_ino:
                        continue
                    data = open(path, "rb").read()
                    assert self.marker.encode() not in data, f"root bytes in {path}"
                    if top == self.scenario.backup_dir:
                        assert b"\0" not in data, f"device bytes in backup {path}"


def attacker(layout, kind, stop, seed):
    """The hostile user's loop (runs in a forked child as that user)."""
    os.setgroups([])
    os.setgid(layout.gid)
    os.setuid(layout.uid)
    rng = random.Random(seed)
    target, appdir = str(layout.target), str(layout.appdir)
    spare = appdir + ".real"
    hardlinks = sorted(p for p in os.listdir(appdir) if p.startswith(".hl"))
    devices = [os.path.join(appdir, p) for p in os.listdir(appdir) if p.startswith(".dev")]
    swaps = 0
    sentinel_ino = layout.sentinel_ino  # the user cannot stat it: its directory is 0700

    def benign():
        tmp = os.path.join(appdir, f".attacker-{rng.getrandbits(32):08x}")
        with open(tmp, "w") as handle:
            handle.write("API_TOKEN=old\nSETTING=0\n")
        os.chmod(tmp, 0o640)
        os.rename(tmp, target)

    def pause():
        time.sleep(rng.uniform(0, 0.003))

    def calm():
        # Longer in the benign state, so that many runs start on a regular file and meet the
        # swap half-way through.
        time.sleep(rng.uniform(0, 0.015))

    while not os.path.exists(stop):
        move = kind if kind != "mixed" else rng.choice(ATTACKS[:-1])
        if move == "hardlink" and not hardlinks:
            move = "symlink"
        try:
            if move == "symlink":
                tmp = os.path.join(appdir, ".attacker-link")
                os.symlink(str(layout.sentinel), tmp)
                os.rename(tmp, target)
                pause()
                benign()
            elif move == "hardlink":
                link = os.path.join(appdir, hardlinks.pop())
                os.rename(link, target)
                pause()
                if os.lstat(target).st_ino == sentinel_ino:  # take it back for the next round
                    os.rename(target, link)
                    hardlinks.insert(0, os.path.basename(link))
                benign()
            elif move == "fifo":
                tmp = os.path.join(appdir, ".attacker-fifo")
                os.mkfifo(tmp, 0o666)
                os.rename(tmp, target)
                pause()
                benign()
            elif move == "device":
                device = rng.choice(devices)
                os.rename(device, target)
                pause()
                os.rename(target, device)
                if not stat.S_ISCHR(os.lstat(device).st_mode):
                    devices.remove(device)
                    if not devices:
                        devices.append(device)
                benign()
            elif move == "directory":
                os.rename(appdir, spare)
                os.symlink(str(layout.rootdir), appdir)
                pause()
                os.unlink(appdir)
                os.rename(spare, appdir)
            swaps += 1
            calm()
        except OSError:
            if os.path.islink(appdir):
                os.unlink(appdir)
            if os.path.isdir(spare) and not os.path.exists(appdir):
                os.rename(spare, appdir)
    return swaps


def _reason(stderr):
    """The kind of error a run reported, without paths (for the figures)."""
    for line in stderr.splitlines():
        if "error:" in line and "job" not in line.split("error:", 1)[1][:6]:
            text = line.split("error:", 1)[1]
            text = re.sub(r"/\S+", "PATH", text)
            return re.sub(r"^ app: ", "", text).strip()[:70]
    return "none"


@pytest.mark.parametrize("kind", ATTACKS)
def test_hostile_owner_cannot_turn_the_sync_against_root(base, hostile_user, kind):
    uid, gid = hostile_user
    runs = scaled(300)
    layout = Layout(base, uid, gid, links=50 if kind in ("hardlink", "mixed") else 0)
    scenario = layout.scenario
    stop = base / "stop"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the attacker
        code = 0
        try:
            attacker(layout, kind, str(stop), seed=runs)
        except BaseException:
            code = 1
        os._exit(code)

    tally = Tally()
    codes = {}
    reasons = Counter()
    try:
        for index in range(runs):
            scenario.write_source(f"API_TOKEN=token-{index}\nSETTING={index}\n")
            args = ("restore", scenario.job) if index % 10 == 9 else ()
            result = scenario.forked(*args, timeout=20)
            codes[result.returncode] = codes.get(result.returncode, 0) + 1
            reasons[_reason(result.stderr)] += 1
            with tally.attempt(f"{kind} run {index} {' '.join(args) or 'sync'}"):
                assert not result.timed_out, "the run hung"
                no_backup_yet = args and "has no backups" in result.stderr
                assert result.returncode in (0, 1) or (result.returncode == 2 and no_backup_yet), (
                    f"exit {result.returncode}: {result.stderr}")
                assert "Traceback" not in result.stderr, result.stderr
                layout.check_protected()
    finally:
        stop.touch()
        _, status = os.waitpid(pid, 0)
    with tally.attempt(f"{kind} after the loop"):
        layout.check_protected()
        layout.check_no_root_bytes_escaped()
        assert os.waitstatus_to_exitcode(status) == 0, "the attacker loop crashed"
    tally.finish(f"hostile-owner-{kind}", f"exit codes {dict(sorted(codes.items()))}; "
                 f"errors {dict(reasons.most_common(6))}")
    # Not vacuous: some runs synced the real target, some were refused by the attack.
    assert codes.get(0, 0) > 0 and codes.get(1, 0) > 0, codes


@pytest.mark.parametrize("holder_mode, holder_group, followed", [
    (0o755, 0, True),      # a root-owned directory nobody else can write: followed
    (0o775, None, False),  # writable by the hostile user's group: refused
    (0o757, 0, False),     # writable by everyone: refused
    (0o1777, 0, False),    # sticky, like /tmp: others can still plant entries: refused
])
def test_symlinked_directory_is_followed_only_from_a_safe_directory(
        base, hostile_user, holder_mode, holder_group, followed):
    uid, gid = hostile_user
    real = base / "real-app"
    real.mkdir(mode=0o755)
    holder = base / "links"
    holder.mkdir()
    os.chown(holder, 0, gid if holder_group is None else holder_group)
    holder.chmod(holder_mode)
    (holder / "app").symlink_to(real)
    scenario = Scenario(base / "job", source_text="API_TOKEN=new\n", target_text=None)
    scenario.appdir, scenario.target = holder / "app", holder / "app" / ".env"
    scenario.write_target("API_TOKEN=old\n")
    scenario.write_config(target=scenario.target)
    before = snapshot(real / ".env")

    result = scenario.run()

    if followed:
        assert result.returncode == 0, result.stderr
        assert (real / ".env").read_text() == "API_TOKEN=new\n"
    else:
        assert result.returncode == 1, result.stderr
        assert "symlink" in result.stderr
        assert snapshot(real / ".env") == before
        assert scenario.backups() == []


def test_planted_temp_names_are_never_followed(base, hostile_user):
    """Entries the user plants under the temp-file pattern (the clean-up removes such names)
    are unlinked or skipped, never followed: a symlink and a hard link to a root-only file, a
    FIFO, a directory."""
    uid, gid = hostile_user
    layout = Layout(base, uid, gid, links=0)
    appdir = layout.appdir
    names = [f"..env.secretsync-{c * 16}.tmp" for c in "abcd"]
    os.link(layout.sentinel, appdir / names[3])  # as root: the user could not
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the user plants the rest
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
        os.symlink(layout.sentinel, appdir / names[0])
        os.mkfifo(appdir / names[1])
        os.mkdir(appdir / names[2])
        os._exit(0)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    layout.scenario.write_source("API_TOKEN=new\nSETTING=2\n")

    result = layout.scenario.forked(timeout=20)

    assert not result.timed_out
    assert result.returncode in (0, 1), result.stderr
    assert "Traceback" not in result.stderr
    layout.check_protected()
    layout.check_no_root_bytes_escaped()
    if result.returncode == 0:
        assert values(layout.target) == {"API_TOKEN": "new", "SETTING": "2"}
