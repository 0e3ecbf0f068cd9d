"""What a review of the engine found, each case a test of the behaviour it now has."""

import datetime
import os
import shutil
import subprocess

import pytest
from dotenv import dotenv_values

from sandbox import PYTHON, REPO, snapshot

SENTINEL = "SENTINEL-4f1c9a7e"


def _by_path(path):
    return dotenv_values(path, interpolate=False)


# Key names that are not plain names --------------------------------------------------------

def test_review_mistyped_source_line_fails_the_job_without_showing_it(inproc, box):
    box.write_source(f"API_A=a\nAPI_SECRET:{SENTINEL}\n")
    box.write_target("API_A=old\n")
    box.configure()

    result = inproc(box)

    assert result.rc == 1
    assert (f"secretsync: error: app: {box.source}: line 2: a key matching the sync patterns "
            "is not a plain name (letters, digits, _ . -); fix that line") in result.err_lines
    assert SENTINEL not in result.out + result.err + repr(result.journal)
    assert box.target.read_bytes() == b"API_A=old\n"


def test_review_quoted_target_key_with_a_line_break_is_never_reported_or_removed(inproc, box):
    forged = "'API_X\napp: updated /etc/shadow (forged)'=1\n"
    box.write_source("API_A=a\n")
    box.write_target("API_A=old\n" + forged)
    box.configure({"app": box.job(remove_missing="yes")})

    result = inproc(box)

    assert result.rc == 0, result.err
    assert "forged" not in result.out + result.err + repr(result.journal)
    assert box.target.read_bytes() == ("API_A=a\n" + forged).encode()


# Carriage returns: values as python-dotenv reads a file (text mode) --------------------------

@pytest.mark.parametrize("source, target", [
    ('K="a\\rb"\n', "K=old\n"),                          # the escape: a real CR in the value
    ("K='a\rb'\n", 'K="a\\rb"\n'),                       # a raw CR reads as LF
    ('K="line1\\r\\nline2"\n', "K=old\n"),
    ('K="-----BEGIN\r\nabc\r\n-----END"\r\n', 'K="-----BEGIN\nabc\n-----END"\n'),
])
def test_review_carriage_returns_read_back_as_python_dotenv_reads_the_source(
        box, source, target):
    box.write_source(source)
    box.write_target(target)
    box.configure({"app": box.job(sync="K")})

    result = box.run()

    assert result.rc == 0, result.err
    assert _by_path(box.target)["K"] == _by_path(box.source)["K"]
    assert box.run("--check").rc == 0


def test_review_equal_values_across_crlf_and_lf_files_are_in_sync(box):
    box.write_source('K="-----BEGIN\r\nabc\r\n-----END"\r\n')
    box.write_target('K="-----BEGIN\nabc\n-----END"\n')
    box.configure({"app": box.job(sync="K", on_change="touch " + str(box.root / "hook"))})
    before = snapshot(box.target)

    result = box.run()

    assert result.rc == 0, result.err
    assert "  in sync" in result.out_lines
    assert snapshot(box.target) == before
    assert not (box.root / "hook").exists()


def test_review_lone_cr_file_gets_lone_cr_lines_appended(box):
    box.write_source("API_A=a\nAPI_B=b\n")
    box.write_target("X=1\rY=2\r")
    box.configure()

    assert box.run().rc == 0
    assert box.target.read_bytes() == b"X=1\rY=2\rAPI_A=a\rAPI_B=b\r"


# Backups -----------------------------------------------------------------------------------

def _future_backups(box, count):
    directory = box.backups / "app"
    directory.mkdir(parents=True, mode=0o700)
    for day in range(1, count + 1):
        path = directory / f"203001{day:02d}T000000.000000Z.env"
        path.write_bytes(b"API_A=from-the-future\n")
        path.chmod(0o600)


def test_review_backup_just_taken_survives_pruning_when_the_clock_went_back(box):
    box.write_source("API_A=new\n")
    box.write_target("API_A=precious-current\n")
    box.configure({"app": box.job(keep_backups="2")})
    _future_backups(box, 2)

    result = box.run()

    assert result.rc == 0, result.err
    backup = result.out_lines[-2].split("backup ", 1)[1]
    assert open(backup, "rb").read() == b"API_A=precious-current\n"
    assert len(box.backup_files()) == 2


def test_review_restore_keeps_the_saved_current_content(box):
    box.write_source("API_A=new\n")
    box.write_target("API_A=current\n")
    box.configure({"app": box.job(keep_backups="2")})
    _future_backups(box, 2)

    result = box.run("restore", "app")

    assert result.rc == 0, result.err
    saved = result.out_lines[-1].split("saved as ", 1)[1]
    assert open(saved, "rb").read() == b"API_A=current\n"
    assert box.target.read_bytes() == b"API_A=from-the-future\n"


def test_review_failed_write_leaves_no_backup_and_does_not_say_updated(box):
    if not shutil.which("chattr"):
        pytest.skip("chattr (e2fsprogs) is not installed")
    box.write_source("API_A=new\n")
    box.write_target("API_A=old\n")
    box.configure()
    if subprocess.run(["chattr", "+i", str(box.target.parent)]).returncode != 0:
        pytest.skip("this file system has no immutable attribute")
    try:
        results = [box.run() for _ in range(3)]
    finally:
        subprocess.run(["chattr", "-i", str(box.target.parent)], check=True)

    for result in results:
        assert result.rc == 1
        assert not any(line.startswith("  updated") for line in result.out_lines), result.out
        assert any("cannot create a temp file beside the target" in line
                   for line in result.out_lines)
    assert box.backup_files() == []
    assert box.target.read_bytes() == b"API_A=old\n"


# The target's ACL and extended attributes --------------------------------------------------

def _nobody_can_read(path):
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           "cat", str(path)], capture_output=True).returncode == 0


def test_review_acl_and_extended_attributes_are_kept(open_box):
    box = open_box
    if not shutil.which("setfacl"):
        pytest.skip("setfacl (acl) is not installed")
    box.write_source("API_A=new\n")
    box.write_target("API_A=old\n", mode=0o640)
    assert not _nobody_can_read(box.target)  # root:root 0640: only the ACL lets nobody in
    os.setxattr(box.target, "user.app", b"kept")
    subprocess.run(["setfacl", "-m", "u:nobody:r", str(box.target)], check=True)
    acl = os.getxattr(box.target, "system.posix_acl_access")
    assert _nobody_can_read(box.target)
    box.configure()

    result = box.run()

    assert result.rc == 0, result.err
    assert box.target.read_bytes() == b"API_A=new\n"
    assert os.getxattr(box.target, "user.app") == b"kept"
    assert os.getxattr(box.target, "system.posix_acl_access") == acl
    assert _nobody_can_read(box.target)


# Standard streams --------------------------------------------------------------------------

def _three_jobs(box):
    box.write_source("API_A=new\n")
    targets = []
    for name in ("one", "two", "three"):
        targets.append(box.write_target("API_A=old\n", path=box.root / "app" / name))
    box.configure({t.name: box.job(target=str(t)) for t in targets})
    return targets


def test_review_reader_gone_from_stdout_does_not_stop_the_other_jobs(box):
    targets = _three_jobs(box)
    reader, writer = os.pipe()
    os.close(reader)
    done = subprocess.run(box.command(), cwd=REPO, stdout=writer, stderr=subprocess.PIPE,
                          text=True)
    os.close(writer)

    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    assert [t.read_bytes() for t in targets] == [b"API_A=new\n"] * 3


def test_review_closed_stderr_sends_nothing_into_the_lock_or_the_target(box):
    box.write_source("API_A=new\nAPI_A=newer\n")  # a duplicate: a warning to write
    box.write_target("API_A=old\n")
    box.configure({"app": box.job(on_change="echo HOOK-OUTPUT")})

    done = subprocess.run(box.command(), cwd=REPO, capture_output=True,
                          preexec_fn=lambda: os.close(2))

    assert done.returncode == 0
    assert box.target.read_bytes() == b"API_A=newer\n"
    assert box.lock.read_text().strip().isdigit()


# Bad values and odd files ------------------------------------------------------------------

@pytest.mark.parametrize("option", ["owner", "group"])
def test_review_id_that_chown_reads_as_leave_alone_is_refused(box, option):
    box.write_source("API_A=new\n")
    box.write_target("API_A=old\n")
    box.configure({"app": box.job(**{option: "4294967295"})})

    result = box.run()

    assert result.rc == 2
    assert result.err_lines == [
        f"secretsync: error: {box.config}: [app] {option}: 4294967295 is not a valid "
        f"{'user' if option == 'owner' else 'group'} id"]


def test_review_directory_named_like_a_temp_file_does_not_fail_the_job(box):
    box.write_source("API_A=new\n")
    box.write_target("API_A=old\n")
    (box.target.parent / ".env.secretsync-0123456789abcdef.tmp").mkdir()
    box.configure()

    result = box.run()

    assert result.rc == 0, result.err
    assert box.target.read_bytes() == b"API_A=new\n"


def test_review_huge_sparse_target_is_refused_before_it_is_read(box):
    box.write_source("API_A=new\n")
    box.write_target("")
    os.truncate(box.target, 1 << 30)
    box.configure()

    result = box.run()

    assert result.rc == 1
    assert f"secretsync: error: app: {box.target}: larger than 64 MiB; refusing to read it" \
        in result.err_lines
    assert os.stat(box.target).st_size == 1 << 30


def test_review_inline_comment_is_found_after_a_value_full_of_hashes(box):
    value = "#" * 2000
    box.write_source("API_A=new\n")
    box.write_target(f"API_A='{value}' # the real comment\n")
    box.configure()

    assert box.run().rc == 0
    assert box.target.read_bytes() == b"API_A='new' # the real comment\n"


def test_review_backup_names_are_utc_times(box):
    box.write_source("API_A=new\n")
    box.write_target("API_A=old\n")
    box.configure()
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)

    assert box.run().rc == 0
    name = box.backup_files()[0].name
    taken = datetime.datetime.strptime(name, "%Y%m%dT%H%M%S.%fZ.env").replace(
        tzinfo=datetime.timezone.utc)
    assert before <= taken <= datetime.datetime.now(datetime.timezone.utc)


def test_review_in_sync_run_prunes_backups_an_interrupted_run_left(box):
    box.write_source("API_A=new\n")
    box.write_target("API_A=new\n")
    box.configure({"app": box.job(keep_backups="2")})
    directory = box.backups / "app"
    directory.mkdir(parents=True, mode=0o700)
    names = [f"2026010{day}T000000.000000Z.env" for day in range(1, 5)]
    for name in names:
        (directory / name).write_bytes(b"API_A=old\n")
    before = snapshot(box.target)

    result = box.run()

    assert result.rc == 0, result.err
    assert "  in sync" in result.out_lines
    assert [p.name for p in box.backup_files()] == names[-2:]
    assert snapshot(box.target) == before
