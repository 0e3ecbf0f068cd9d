"""secretsync.deb on a real systemd: install, timer, service, journal, upgrade, purge.

Boots a throwaway Debian (each suite in SECRETSYNC_TEST_SUITES, default bookworm and trixie)
with systemd as PID 1 in systemd-nspawn, installs the package built by `make deb` with its
dependencies from the archive, and runs in_container.sh there; the tests below assert on what
it recorded. One boot per suite serves every test of that suite.

Needs root (mmdebstrap, systemd-nspawn, cgroups); otherwise the whole module is skipped.
"""

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import debimage

HERE = Path(__file__).resolve().parent
REPO = debimage.REPO
DEB = REPO / "secretsync.deb"
SUITES = os.environ.get("SECRETSYNC_TEST_SUITES", "bookworm trixie").split()
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

# What goes into the package; a change to any of these makes secretsync.deb stale.
PACKAGE_SOURCES = ("secretsync", "debian", "ops", "docs/man", "setup.cfg", "pyproject.toml",
                   "Makefile")

MESSAGE_UPDATED = "2a0ff627dce945a0bb07e46449dc0ff8"
MESSAGE_FAILED = "33d36fe493d546329eb956a697623d03"
MESSAGE_RUN = "2572f1132eae40e58c6aff7cc72421a5"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="needs root: builds a Debian image with mmdebstrap and boots it with systemd-nspawn")


def _newest_source_mtime() -> float:
    newest = 0.0
    for name in PACKAGE_SOURCES:
        path = REPO / name
        paths = [path] if path.is_file() else path.rglob("*")
        for item in paths:
            if item.is_file() and "__pycache__" not in item.parts:
                newest = max(newest, item.stat().st_mtime)
    return newest


def _make_deb(tree: Path) -> None:
    subprocess.run(["make", "-C", str(tree), "deb"], check=True,
                   env=dict(os.environ, PATH=SYSTEM_PATH), stdout=subprocess.DEVNULL)


def _upgrade_deb(workdir: Path) -> Path:
    """Build the same package with a higher version, from a copy of the tree."""
    tree = workdir / "tree"
    shutil.copytree(REPO, tree, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".cache", "secretsync.deb", "__pycache__", ".pybuild", "build"))
    changelog = tree / "debian" / "changelog"
    text = changelog.read_text()
    version = re.match(r"secretsync \(([^)]+)\)", text).group(1)
    entry = (f"secretsync ({version}+upgradetest1) unstable; urgency=medium\n\n"
             "  * Test build: the same package with a higher version.\n\n"
             " -- secretsync tests <tests@example.org>  "
             + time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()) + "\n\n")
    changelog.write_text(entry + text)
    _make_deb(tree)
    return tree / "secretsync.deb"


@pytest.fixture(scope="session")
def debs(tmp_path_factory):
    """A directory with secretsync.deb, secretsync-upgrade.deb and the test's sentinels."""
    if not DEB.exists() or DEB.stat().st_mtime < _newest_source_mtime():
        _make_deb(REPO)
    directory = tmp_path_factory.mktemp("debs")
    shutil.copy(DEB, directory / "secretsync.deb")
    shutil.copy(_upgrade_deb(tmp_path_factory.mktemp("upgrade")),
                directory / "secretsync-upgrade.deb")
    sentinels = [f"SENTINEL{kind}{secrets.token_hex(8)}" for kind in ("old", "new", "local")]
    (directory / "sentinels").write_text("\n".join(sentinels) + "\n")
    return directory, sentinels


@dataclass
class Step:
    name: str
    rc: int
    out: str
    err: str

    def __str__(self) -> str:
        return (f"step {self.name}: exit {self.rc}\n--- stdout ---\n{self.out[-3000:]}"
                f"\n--- stderr ---\n{self.err[-3000:]}")


class Booted:
    """What in_container.sh recorded in one container."""

    def __init__(self, suite: str, out: Path, sentinels: list, nspawn) -> None:
        self.suite, self.out, self.sentinels, self.nspawn = suite, out, sentinels, nspawn

    def step(self, name: str) -> Step:
        rc = self.out / f"{name}.rc"
        assert rc.exists(), f"step {name} did not run\n{self.diagnostics()}"
        out, err = ((self.out / f"{name}.{suffix}").read_text(errors="replace")
                    for suffix in ("out", "err"))
        return Step(name, int(rc.read_text()), out, err)

    def ok(self, name: str) -> Step:
        """The step, asserted to have exited 0."""
        step = self.step(name)
        assert step.rc == 0, str(step)
        return step

    def diagnostics(self) -> str:
        journal = self.out / "journal.txt"
        tail = journal.read_text(errors="replace")[-6000:] if journal.exists() else "(none)"
        return (f"nspawn exit {self.nspawn.returncode}\nnspawn stderr:\n"
                f"{self.nspawn.stderr[-3000:]}\njournal tail:\n{tail}")


@pytest.fixture(scope="module", params=SUITES)
def booted(request, debs, tmp_path_factory):
    """Boot the suite's image once, run in_container.sh in it, return its results."""
    suite = request.param
    directory, sentinels = debs

    started = time.monotonic()
    root = debimage.image(suite)
    image_seconds = time.monotonic() - started

    out = tmp_path_factory.mktemp(f"out-{suite}")
    started = time.monotonic()
    nspawn = debimage.boot(root, f"secretsync-{suite}", binds={out: "/out"},
                           ro_binds={directory: "/debs", HERE: "/test"},
                           runner_unit=HERE / "runner.service")
    boot_seconds = time.monotonic() - started
    print(f"{suite}: image ready in {image_seconds:.1f} s, boot and test run "
          f"{boot_seconds:.1f} s")

    booted = Booted(suite, out, sentinels, nspawn)
    assert (out / "done").exists(), f"the test script did not finish\n{booted.diagnostics()}"
    return booted


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _journal_entries(text: str) -> list:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# 0. The package itself, on the host ---------------------------------------------------

def test_lintian_reports_no_error_or_warning(debs):
    debimage.ensure_packages({"lintian": "lintian"})
    lintian = subprocess.run(
        ["lintian", "--fail-on", "error,warning", "--display-level", ">=warning", str(DEB)],
        capture_output=True, text=True, env=dict(os.environ, PATH=SYSTEM_PATH))
    tags = [line for line in lintian.stdout.splitlines() if re.match(r"[EW]: ", line)]
    assert (lintian.returncode, tags) == (0, []), lintian.stdout + lintian.stderr


# 1. Installing ---------------------------------------------------------------------------

def test_install_pulls_dependencies_from_the_archive(booted):
    before = booted.step("deps-before").out
    assert "python3-dotenv install ok installed" not in before
    assert "python3-systemd install ok installed" not in before
    booted.ok("apt-update")
    install = booted.ok("install")
    assert re.search(r"^Setting up python3-dotenv ", install.out, re.M), str(install)
    assert re.search(r"^Setting up python3-systemd ", install.out, re.M), str(install)
    assert re.search(r"^Setting up secretsync ", install.out, re.M), str(install)
    after = booted.ok("deps-after").out
    assert after.count("install ok installed") == 3, after
    assert re.fullmatch(r"secretsync \S+\n", booted.ok("version").out)


# 2. The units ----------------------------------------------------------------------------

def test_timer_is_enabled_and_active_at_three_in_chicago(booted):
    assert booted.ok("timer-enabled").out.strip() == "enabled"
    assert booted.ok("timer-active").out.strip() == "active"
    calendar = booted.ok("timer-calendar").out
    assert "OnCalendar=*-*-* 03:00:00 America/Chicago" in calendar, calendar
    # The zone is honoured: 03:00 in Chicago is 08:00 or 09:00 UTC, with daylight saving.
    analyzed = booted.ok("calendar").out
    assert re.search(r"(Next elapse|\(in UTC\)): \S+ \S+ 0[89]:00:00 UTC", analyzed), analyzed


def test_service_is_not_enabled_by_itself(booted):
    enabled = booted.step("service-enabled")
    assert enabled.out.strip() == "static", str(enabled)
    assert booted.step("service-active").out.strip() == "inactive"


def test_systemd_analyze_verify_is_silent(booted):
    verify = booted.step("verify")
    assert (verify.rc, verify.out, verify.err) == (0, "", ""), str(verify)


def test_service_is_sandboxed(booted):
    sandbox = booted.ok("service-sandbox").out.splitlines()
    for expected in ("ProtectSystem=strict", "ProtectHome=yes", "PrivateNetwork=yes",
                     "RuntimeDirectory=secretsync", "RuntimeDirectoryPreserve=yes"):
        assert expected in sandbox, sandbox
    score = booted.ok("sandbox-score").out
    level = float(re.search(r"Overall exposure level for secretsync.service: ([0-9.]+)",
                            score).group(1))
    assert level <= 2.0, score


# 3. What the package set up --------------------------------------------------------------

def test_backup_directory_and_config_are_in_place(booted):
    assert booted.ok("backup-dir").out.strip() == "700 root root"
    assert booted.ok("config-stat").out.strip() == "644 root root"
    # The template configures no job: every example is a comment.
    assert booted.step("config-sections").out.strip() == "0"


def test_man_pages_open(booted):
    paths = booted.ok("man-path").out.split()
    assert paths == ["/usr/share/man/man8/secretsync.8.gz",
                     "/usr/share/man/man5/secretsync.conf.5.gz"], paths
    page8 = booted.ok("man8")
    assert re.search(r"^NAME\n\s+secretsync\s+-\s+keep application", page8.out, re.M), str(page8)
    assert "SYNOPSIS" in page8.out
    page5 = booted.ok("man5")
    assert re.search(r"^NAME\n\s+secretsync\.conf\s+-\s+the jobs", page5.out, re.M), str(page5)


def test_service_succeeds_with_no_job_configured(booted):
    booted.ok("start-empty")
    assert booted.ok("start-empty-result").out.strip() == "success"


# 4. A job run by the service -------------------------------------------------------------

def test_service_updates_the_target_keeping_owner_and_mode(booted):
    old, new, local = booted.sentinels
    booted.ok("setup")
    dropin = booted.ok("dropin").out
    assert 'ReadWritePaths="-/opt/app"' in dropin, dropin
    start = booted.step("start")
    assert start.rc == 0, f"{start}\n{booted.step('status')}"
    assert booted.ok("start-result").out.split() == ["Result=success", "ExecMainStatus=0"]

    assert booted.ok("target-stat").out.strip() == "640 appsvc appsvc"
    assert booted.ok("target").out == (
        "# the application's own settings\n"
        "DB_DSN=postgresql:///app\n"
        f"APP_TOKEN={new}\n"
        f"APP_LOCAL_URL={local}\n"
        "LOG_LEVEL=info\n"
        f"APP_NEW_KEY=added-{new}\n")


def test_service_keeps_a_backup_of_the_old_target(booted):
    listing = booted.ok("backups-list").out.splitlines()
    files = [line for line in listing if line.startswith("f ")]
    assert len(files) == 1, listing
    assert files[0].startswith("f 600 root /var/backups/secretsync/app/"), listing
    assert "d 700 root /var/backups/secretsync/app" in listing, listing
    assert f"APP_TOKEN={booted.sentinels[0]}\n" in booted.ok("backup-content").out


def test_hook_restarts_the_application_from_the_service(booted):
    before = booted.ok("app-before").out.strip()
    after = dict(line.split("=", 1) for line in booted.ok("app-after").out.split())
    assert after["ActiveState"] == "active"
    assert after["InvocationID"] != before, "app.service was not restarted by on_change"


def test_journal_has_the_job_entry_with_key_names_only(booted):
    entries = _journal_entries(booted.ok("journal-secretsync").out)
    updated = [e for e in entries
               if e.get("MESSAGE_ID") == MESSAGE_UPDATED and e.get("SECRETSYNC_JOB") == "app"]
    assert len(updated) == 1, entries
    entry = updated[0]
    assert entry["SECRETSYNC_JOB"] == "app"
    assert entry["SECRETSYNC_TARGET"] == "/opt/app/.env"
    assert entry["SECRETSYNC_ADDED"] == "APP_NEW_KEY"
    assert entry["SECRETSYNC_CHANGED"] == "APP_TOKEN"
    assert entry["SECRETSYNC_REMOVED"] == ""
    assert entry["SECRETSYNC_BACKUP"].startswith("/var/backups/secretsync/app/")
    assert entry["SECRETSYNC_BACKUP"] in booted.step("backups-list").out
    assert entry["_SYSTEMD_UNIT"] == "secretsync.service"
    assert entry["SYSLOG_IDENTIFIER"] == "secretsync"
    assert any(e.get("MESSAGE_ID") == MESSAGE_RUN for e in entries), entries


def test_no_value_reaches_the_journal(booted):
    journal = booted.ok("journal-all").out
    # Not vacuous: the export holds secretsync's own entries from the service.
    assert re.search(r"^SYSLOG_IDENTIFIER=secretsync$", journal, re.M), "no secretsync entry"
    assert "_SYSTEMD_UNIT=secretsync.service" in journal
    for sentinel in booted.sentinels:
        assert sentinel not in journal, f"a value ({sentinel[:11]}...) is in the journal"


def test_a_job_added_without_daemon_reload_fails_alone_and_works_after(booted):
    old, new, _local = booted.sentinels
    booted.ok("stale-setup")
    stale = booted.step("stale-start")
    assert stale.rc != 0, str(stale)  # the service fails: one of its jobs did
    assert booted.ok("stale-target").out.split()[0] == _sha256(f"APP_TOKEN={old}\n")

    entries = _journal_entries(booted.ok("journal-late").out)
    warnings = [e for e in entries if e.get("SYSLOG_IDENTIFIER") == "secretsync-generator"]
    assert len(warnings) == 1 and warnings[0]["PRIORITY"] == "4", warnings
    assert "systemctl daemon-reload" in warnings[0]["MESSAGE"]
    failed = [e for e in entries
              if e.get("MESSAGE_ID") == MESSAGE_FAILED and e.get("SECRETSYNC_JOB") == "app2"]
    assert len(failed) == 1 and failed[0]["PRIORITY"] == "3", entries
    assert failed[0]["_SYSTEMD_UNIT"] == "secretsync.service"
    # The job whose directory is writable still ran in that same failed run.
    app_updates = [e for e in entries
                   if e.get("MESSAGE_ID") == MESSAGE_UPDATED and e.get("SECRETSYNC_JOB") == "app"]
    assert [e["SECRETSYNC_ADDED"] for e in app_updates] == ["APP_NEW_KEY", "APP_LATER"]

    booted.ok("reload")
    booted.ok("reloaded-start")
    assert booted.ok("reloaded-target").out == f"APP_TOKEN={new}\n"


# 5. Runs by hand -------------------------------------------------------------------------

def test_dry_run_as_root_reports_and_writes_nothing(booted):
    dry = booted.ok("dry-run-root")
    assert re.search(r"^\s+add\s+APP_LATER$", dry.out, re.M), str(dry)
    assert booted.ok("target-sha-before-dry").out == booted.ok("target-sha-after-dry").out
    for sentinel in booted.sentinels:
        assert sentinel not in dry.out + dry.err
    check = booted.step("check-root")
    assert check.rc == 3, str(check)


def test_dry_run_as_unprivileged_user_fails_in_one_line(booted):
    dry = booted.step("dry-run-user")
    assert dry.rc in (1, 2), str(dry)
    assert "Traceback" not in dry.out + dry.err, str(dry)
    lines = [line for line in dry.err.splitlines() if line.strip()]
    assert len(lines) == 1, str(dry)
    assert lines[0].startswith("secretsync: "), str(dry)
    for sentinel in booted.sentinels:
        assert sentinel not in dry.out + dry.err


# 6. Upgrade, remove, purge ---------------------------------------------------------------

def test_config_edit_survives_reinstall_and_upgrade(booted):
    edited = booted.ok("config-sha-edited").out
    booted.ok("reinstall")
    assert booted.ok("config-sha-reinstall").out == edited
    upgrade = booted.ok("upgrade")
    assert booted.ok("upgraded-version").out.endswith("+upgradetest1"), str(upgrade)
    assert booted.ok("config-sha-upgrade").out == edited
    assert booted.ok("timer-active-upgrade").out.strip() == "active"
    assert booted.ok("timer-enabled-upgrade").out.strip() == "enabled"
    assert booted.ok("backup-dir-upgrade").out.strip() == "700 root root"


def test_remove_stops_the_timer(booted):
    booted.ok("remove")
    assert booted.step("timer-active-removed").out.strip() == "inactive"
    # Gone with its unit file: nothing is enabled, and no next run is scheduled.
    enabled = booted.step("timer-enabled-removed")
    assert enabled.rc != 0 and enabled.out.strip() != "enabled", str(enabled)
    listed = booted.ok("timer-list-removed").out
    assert listed.split()[:2] in ([], ["-", "-"]), listed
    assert booted.ok("config-after-remove").out.strip() == "/etc/secretsync.conf"


def test_purge_removes_the_config_and_keeps_the_backups(booted):
    booted.ok("purge")
    gone = booted.step("after-purge").out
    for path in ("/etc/secretsync.conf", "/etc/secretsync.d", "/usr/sbin/secretsync",
                 "/etc/systemd/system/timers.target.wants/secretsync.timer"):
        assert f"cannot access '{path}': No such file or directory" in gone, gone
    backups = booted.ok("backups-after-purge").out.splitlines()
    directories = [line.rsplit("/", 1)[0] for line in backups]
    # app: the first run and the run that added APP_LATER. app2: its run after the reload (and
    # perhaps one from the run the sandbox stopped, which backs up before it writes).
    assert directories.count("600 /var/backups/secretsync/app") == 2, backups
    assert directories.count("600 /var/backups/secretsync/app2") >= 1, backups
    assert len(directories) == len(backups) and all(
        line.startswith("600 /var/backups/secretsync/app") for line in backups), backups
    assert booted.step("timer-active-purged").out.strip() == "inactive"
