"""What a job does to its target: stale keys, creation, owner/group/mode, refused targets."""

import os
import socket

import pytest
from dotenv import dotenv_values

from sandbox import snapshot

NOBODY, NOGROUP = 65534, 65534


def _values(path):
    return dotenv_values(path, interpolate=False)


def test_sync_key_gone_from_source_is_kept_and_reported_stale_by_default(box):
    box.write_source("API_A=a\n")
    box.write_target("API_A=a\nAPI_GONE=old\nAPP=1\n")
    box.configure()
    before = snapshot(box.target)

    result = box.run()

    assert result.rc == 0, result.err
    assert result.keys("stale") == ["API_GONE"]
    assert result.keys("remove") == []
    assert snapshot(box.target) == before


def test_sync_remove_missing_removes_every_binding_of_a_gone_key(box):
    box.write_source("API_A=a\n")
    box.write_target("API_GONE=1\nAPP=1\n# c\nAPI_GONE=2\nAPI_A=a\nAPP_GONE=x\n")
    box.configure({"app": box.job(remove_missing="yes")})

    result = box.run()

    assert result.rc == 0, result.err
    assert result.keys("remove") == ["API_GONE"]
    assert box.target.read_text() == "APP=1\n# c\nAPI_A=a\nAPP_GONE=x\n"


def test_sync_remove_missing_no_keeps_gone_keys(box):
    box.write_source("API_A=a\n")
    box.write_target("API_GONE=1\nAPI_A=old\n")
    box.configure({"app": box.job(remove_missing="no")})

    result = box.run()

    assert result.rc == 0
    assert result.keys("stale") == ["API_GONE"]
    assert box.target.read_text() == "API_GONE=1\nAPI_A=a\n"


def test_sync_remove_missing_never_removes_a_preserved_key(box):
    box.write_source("API_A=a\n")
    box.write_target("API_KEEP=1\nAPI_A=a\n")
    box.configure({"app": box.job(remove_missing="yes", preserve="API_KEEP")})
    before = snapshot(box.target)

    result = box.run()

    assert result.rc == 0
    assert snapshot(box.target) == before
    assert "API_KEEP" not in result.out


def test_sync_missing_target_is_an_error_without_create(box):
    box.write_source("API_A=a\n")
    box.configure()

    result = box.run()

    assert result.rc == 1
    assert not box.target.exists()
    failed = [x for x in result.out_lines if x.startswith("  failed:")]
    assert len(failed) == 1 and str(box.target) in failed[0]


def test_sync_create_yes_makes_a_0600_root_target(box):
    box.write_source("API_A=a\nAPI_B='b c'\n")
    box.configure({"app": box.job(create="yes")})

    result = box.run()

    assert result.rc == 0, result.err
    st = os.stat(box.target)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 0, 0o600)
    assert _values(box.target) == {"API_A": "a", "API_B": "b c"}
    assert not box.backups.exists() or box.backup_files() == []


def test_sync_create_with_configured_owner_group_mode(box):
    box.write_source("API_A=a\n")
    box.configure({"app": box.job(create="yes", owner="nobody", group="nogroup",
                                  mode="0640")})

    assert box.run().rc == 0

    st = os.stat(box.target)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (NOBODY, NOGROUP, 0o640)


@pytest.mark.parametrize("mode", [0o640, 0o600, 0o644, 0o400])
def test_sync_keeps_the_target_owner_group_and_mode(box, mode):
    box.write_source("API_A=new\n")
    box.write_target("API_A=old\n", mode=mode)
    os.chown(box.target, NOBODY, NOGROUP)

    box.configure()
    assert box.run().rc == 0

    st = os.stat(box.target)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (NOBODY, NOGROUP, mode)
    assert _values(box.target) == {"API_A": "new"}


@pytest.mark.parametrize("options, expected", [
    ({"owner": "nobody"}, (NOBODY, 0, 0o640)),
    ({"group": "nogroup"}, (0, NOGROUP, 0o640)),
    ({"mode": "0600"}, (0, 0, 0o600)),
    ({"mode": "440"}, (0, 0, 0o440)),
    ({"owner": "nobody", "group": "nogroup", "mode": "0660"}, (NOBODY, NOGROUP, 0o660)),
])
def test_sync_applies_the_configured_owner_group_and_mode(box, options, expected):
    box.write_source("API_A=new\n")
    box.write_target("API_A=old\n", mode=0o640)
    box.configure({"app": box.job(**options)})

    assert box.run().rc == 0

    st = os.stat(box.target)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == expected


def test_sync_symlinked_target_is_refused(box):
    pointee = box.root / "app" / "real.env"
    box.write_target("API_A=old\n", path=pointee)
    os.symlink(pointee, box.target)
    box.write_source("API_A=new\n")
    box.configure()
    before = snapshot(pointee)

    result = box.run()

    assert result.rc == 1
    assert os.path.islink(box.target) and os.readlink(box.target) == str(pointee)
    assert snapshot(pointee) == before
    assert not box.backups.exists() or box.backup_files() == []
    failed = [x for x in result.out_lines if x.startswith("  failed:")]
    assert len(failed) == 1 and "symlink" in failed[0] and str(box.target) in failed[0]


def test_sync_dangling_symlink_target_is_refused_even_with_create(box):
    pointee = box.root / "elsewhere.env"
    os.symlink(pointee, box.target)
    box.write_source("API_A=new\n")
    box.configure({"app": box.job(create="yes")})

    result = box.run()

    assert result.rc == 1
    assert os.path.islink(box.target)
    assert not pointee.exists()


@pytest.mark.parametrize("kind", ["directory", "fifo", "socket"])
def test_sync_non_regular_target_is_refused(box, kind):
    if kind == "directory":
        box.target.mkdir()
    elif kind == "fifo":
        os.mkfifo(box.target)
    else:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(box.target))
        sock.close()
    box.write_source("API_A=new\n")
    box.configure({"app": box.job(create="yes")})
    mode = os.lstat(box.target).st_mode

    result = box.run(timeout=20)

    assert result.rc == 1
    assert os.lstat(box.target).st_mode == mode
    failed = [x for x in result.out_lines if x.startswith("  failed:")]
    assert len(failed) == 1 and "regular file" in failed[0]


def test_sync_hard_linked_target_is_refused(box):
    other = box.root / "app" / "other-name"
    box.write_target("API_A=old\n")
    os.link(box.target, other)
    box.write_source("API_A=new\n")
    box.configure()
    before = snapshot(box.target)

    result = box.run()

    assert result.rc == 1
    assert snapshot(box.target) == before
