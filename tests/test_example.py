"""The shipped example (docs/examples/): the issue's main job, in a scratch copy."""

import os
import shutil

from dotenv import dotenv_values
from dotenv.parser import parse_stream
import io

from sandbox import REPO, ini

EXAMPLES = REPO / "docs" / "examples"
EXPECTED_ADDED = [
    "NINJA_BASE_URL",
    "CONNECTWISE_COMPANY_ID",
    "CONNECTWISE_PUBLIC_KEY",
    "CONNECTWISE_PRIVATE_KEY",
    "CONNECTWISE_CLIENT_ID",
    "CONNECTWISE_BASE_URL",
]


def _scratch_example(box):
    """Copy the example into the sandbox, rewriting the config's /opt/ paths."""
    shutil.copyfile(EXAMPLES / "api-secrets.env", box.source)
    os.chmod(box.source, 0o600)
    shutil.copyfile(EXAMPLES / "es-inventory-hub.env", box.target)
    os.chmod(box.target, 0o640)
    os.chown(box.target, 65534, 65534)
    text = (EXAMPLES / "secretsync.conf").read_text()
    text = text.replace("/opt/shared-secrets/api-secrets.env", str(box.source))
    text = text.replace("/opt/es-inventory-hub/.env", str(box.target))
    assert "/opt/" not in text
    text += f"backup_dir = {box.backups}\n"
    box.configure(text=text)


def _statements(data: bytes) -> list[tuple]:
    return [(b.key, b.original.string) for b in parse_stream(io.StringIO(data.decode()))]


def test_example_dry_run_reports_exactly_the_missing_keys(box):
    _scratch_example(box)
    before = box.target.read_bytes()

    result = box.run("--dry-run")

    assert result.rc == 0, result.err
    assert result.keys("add") == EXPECTED_ADDED
    assert result.keys("change") == []
    assert result.keys("remove") == []
    assert result.keys("stale") == []
    assert box.target.read_bytes() == before
    assert not box.backups.exists()


def test_example_sync_adds_the_keys_and_keeps_the_rest(box):
    _scratch_example(box)
    before = box.target.read_bytes()
    source = dotenv_values(box.source, interpolate=False)

    result = box.run()

    assert result.rc == 0, result.err
    assert result.keys("add") == EXPECTED_ADDED
    after = box.target.read_bytes()
    # Every old statement is still there, byte for byte, and comes first.
    assert after.startswith(before)
    values = dotenv_values(box.target, interpolate=False)
    for key in EXPECTED_ADDED:
        assert values[key] == source[key]
    old = dotenv_values(stream=io.StringIO(before.decode()), interpolate=False)
    assert values["THREATLOCKER_BASE_URL"] == old["THREATLOCKER_BASE_URL"]
    assert values["THREATLOCKER_BASE_URL"] != source["THREATLOCKER_BASE_URL"]
    assert set(values) == set(old) | set(EXPECTED_ADDED)
    st = os.stat(box.target)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (65534, 65534, 0o640)
    backups = box.backup_files("es-inventory-hub")
    assert len(backups) == 1
    assert backups[0].read_bytes() == before

    again = box.run("--check")
    assert again.rc == 0, again.out + again.err
