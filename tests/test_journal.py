"""The journal entries a run sends, as python3-systemd's JournalHandler would send them."""

import pytest

UPDATED = "2a0ff627dce945a0bb07e46449dc0ff8"
FAILED = "33d36fe493d546329eb956a697623d03"


def _no_code_args(entries):
    for message, fields in entries:
        assert fields.get("CODE_ARGS") in (None, "", "()"), (message, fields.get("CODE_ARGS"))


def test_journal_update_entry_carries_the_job_fields(box, inproc):
    box.write_source("API_A=new\nAPI_B=b\n")
    box.write_target("API_A=old\nAPI_GONE=1\n")
    box.configure({"app": box.job(remove_missing="yes")})

    result = inproc(box)

    assert result.rc == 0, result.err
    assert result.journal
    for message, fields in result.journal:
        assert fields["SYSLOG_IDENTIFIER"] == "secretsync"
    updates = [f for m, f in result.journal if f.get("MESSAGE_ID") == UPDATED]
    assert len(updates) == 1
    fields = updates[0]
    backup, = box.backup_files()
    assert fields["SECRETSYNC_JOB"] == "app"
    assert fields["SECRETSYNC_TARGET"] == str(box.target)
    assert fields["SECRETSYNC_ADDED"].split() == ["API_B"]
    assert fields["SECRETSYNC_CHANGED"].split() == ["API_A"]
    assert fields["SECRETSYNC_REMOVED"].split() == ["API_GONE"]
    assert fields["SECRETSYNC_BACKUP"] == str(backup)
    assert fields["PRIORITY"] == "6"
    message = [m for m, f in result.journal if f.get("MESSAGE_ID") == UPDATED][0]
    for word in ("app", str(box.target), "API_A", "API_B", "API_GONE", str(backup)):
        assert word in message
    _no_code_args(result.journal)


def test_journal_failed_job_entry_at_priority_3(box, inproc):
    box.write_source("API_A=new\nAPI_B='open\n")
    box.write_target("API_A=old\n")
    box.configure()

    result = inproc(box)

    assert result.rc == 1
    failures = [(m, f) for m, f in result.journal if f.get("MESSAGE_ID") == FAILED]
    assert len(failures) == 1
    message, fields = failures[0]
    assert fields["PRIORITY"] == "3"
    assert fields["SECRETSYNC_JOB"] == "app"
    assert fields["SECRETSYNC_TARGET"] == str(box.target)
    assert fields["SYSLOG_IDENTIFIER"] == "secretsync"
    assert str(box.source) in message and "line 2" in message
    assert not [f for m, f in result.journal if f.get("MESSAGE_ID") == UPDATED]
    _no_code_args(result.journal)


def test_journal_warnings_at_priority_4(box, inproc):
    box.write_source("API_A=1\nAPI_A=2\n", mode=0o640)
    box.write_target("API_A=2\nnot a statement\n")
    box.configure()

    result = inproc(box)

    assert result.rc == 0, result.err
    warnings = [(m, f) for m, f in result.journal if f.get("PRIORITY") == "4"]
    texts = " | ".join(m for m, f in warnings)
    assert len(warnings) == 3, texts
    assert "API_A" in texts and "line 2" in texts and "0640" in texts
    for message, fields in warnings:
        assert fields["SECRETSYNC_JOB"] == "app"
        assert fields["SYSLOG_IDENTIFIER"] == "secretsync"
    _no_code_args(result.journal)


def test_journal_dry_run_sends_no_target_updated_entry(box, inproc):
    box.write_source("API_A=new\n")
    box.write_target("API_A=old\n")
    box.configure()

    result = inproc(box, "--dry-run")

    assert result.rc == 0
    assert not [f for m, f in result.journal if f.get("MESSAGE_ID") == UPDATED]
    assert any("API_A" in m for m, f in result.journal)


@pytest.mark.parametrize("text", ["[app]\ncolour = red\n", "not an ini file\n"])
def test_journal_config_error_at_priority_3(box, inproc, text):
    box.configure(text=text)

    result = inproc(box)

    assert result.rc == 2
    errors = [(m, f) for m, f in result.journal if f.get("PRIORITY") == "3"]
    assert len(errors) == 1 and str(box.config) in errors[0][0]
    assert errors[0][1]["SYSLOG_IDENTIFIER"] == "secretsync"


def test_journal_restore_entry_names_the_saved_backup(box, inproc):
    box.write_source("API_A=new\n")
    box.write_target("API_A=old\n")
    box.configure()
    assert inproc(box).rc == 0

    result = inproc(box, "restore", "app")

    assert result.rc == 0, result.err
    updates = [f for m, f in result.journal if f.get("MESSAGE_ID") == UPDATED]
    assert len(updates) == 1
    assert updates[0]["SECRETSYNC_BACKUP"] == str(box.backup_files()[-1])
    _no_code_args(result.journal)
