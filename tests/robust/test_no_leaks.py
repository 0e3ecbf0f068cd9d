"""No leaks: sentinel secret values never reach output, the journal, exceptions, names or hooks.

Each scenario runs `secretsync.cli.main` in this process with the journal sender replaced,
so every field the JournalHandler would send (MESSAGE, CODE_ARGS and the rest) is seen, and
with stdout/stderr captured at the file-descriptor level (the hook's output included).
"""

import os
import secrets
from pathlib import Path

import pytest

import secretsync.cli
import secretsync.report
from robustlib import Scenario, walk_names


def sentinel():
    return f"SENTINEL-{secrets.token_hex(8)}"


class Capture:
    """Everything a run shows, in one list of strings to search."""

    def __init__(self):
        self.journal = []

    def sender(self, message, /, **fields):
        self.journal.append({"MESSAGE": message, **fields})

    def texts(self):
        for entry in self.journal:
            for key, value in entry.items():
                yield f"journal {key}", str(value)


@pytest.fixture
def capture(monkeypatch):
    cap = Capture()
    monkeypatch.setattr(secretsync.report, "JOURNAL_SENDER", cap.sender)
    return cap


def run_main(scenario, capture, capfd, *args):
    """Run main in-process; return (exit code, [(where, text)]) of everything shown."""
    shown = []
    try:
        code = secretsync.cli.main(["-c", str(scenario.config), "--lock-file",
                                    str(scenario.lock), *args])
    except SystemExit as exc:
        code = exc.code
        shown.append(("exception", str(exc)))
    except Exception as exc:  # an unexpected exception is itself shown to the user
        code = None
        shown.append(("exception", f"{type(exc).__name__}: {exc} {exc.args!r}"))
    out, err = capfd.readouterr()
    shown += [("stdout", out), ("stderr", err), *capture.texts()]
    shown += [("file name", name) for name in walk_names(scenario.base)]
    return code, shown


def assert_not_shown(shown, secret_values):
    for where, text in shown:
        for value in secret_values:
            assert value not in text, f"a secret value appears in {where}: {text[:300]!r}"
            # Also no recognisable piece of it (a truncated or escaped repr).
            assert value[9:] not in text, f"part of a secret value appears in {where}"


def make(base, source, target, **options):
    scenario = Scenario(base, source_text=source, target_text=target,
                        options={"sync": "API_* DB_* NEW_*", **options})
    return scenario


def hook(base):
    env_file = base / "hook.env"
    return env_file, f"/bin/sh -c 'env > {env_file}; echo hook ran; echo to-stderr >&2'"


def test_sync_dry_run_check_backups_and_restore_show_no_value(base, capture, capfd):
    s = {name: sentinel() for name in ("new", "changed", "old", "unmanaged", "removed", "pem")}
    env_file, command = hook(base)
    source = (f"API_TOKEN={s['changed']}\nNEW_KEY='{s['new']} with space'\n"
              f"UNRELATED={s['unmanaged']}\nAPI_PEM=\"-----BEGIN-----\n{s['pem']}\n-----END\"\n")
    target = (f"API_TOKEN={s['old']}\nDB_GONE={s['removed']}\nLOCAL=keep\n")
    scenario = make(base, source, target, on_change=command, remove_missing="yes")
    secret_values = list(s.values())

    runs = [("--dry-run",), ("--check",), ("-v", "--dry-run"), ("-v",), (), ("--check",),
            ("backups",), ("backups", "app"), ("-v", "restore", "app"), ("-v",)]
    codes = []
    for args in runs:
        code, shown = run_main(scenario, capture, capfd, *args)
        codes.append(code)
        assert_not_shown(shown, secret_values)

    assert codes == [0, 3, 0, 0, 0, 0, 0, 0, 0, 0]
    # The capture is real: entries reached the fake journal and the hook saw key names.
    assert any(e.get("SECRETSYNC_JOB") == "app" for e in capture.journal), capture.journal
    assert any("CODE_ARGS" in e or "CODE_FUNC" in e for e in capture.journal)
    hook_env = env_file.read_text()
    assert "SECRETSYNC_JOB=app" in hook_env and "API_TOKEN" in hook_env
    assert_not_shown([("hook environment", hook_env)], secret_values)
    # The secrets did reach the target (so the scenario moved them), and only the managed ones.
    target_bytes = scenario.target.read_text()
    assert s["changed"] in target_bytes and s["new"] in target_bytes
    assert s["unmanaged"] not in target_bytes
    for backup in scenario.backups():
        assert s["unmanaged"] not in backup.read_text()


FAILING_SOURCES = {
    "unparsable_line": "API_TOKEN=ok\n{v} this line does not parse\n",
    "unparsable_quote": "API_TOKEN='{v}\n",
    "nul_byte": "API_TOKEN={v}\x00tail\n",
    "invalid_utf8": "API_TOKEN={v}\udcff\n",
    "duplicate_key": "API_TOKEN={v}\nAPI_TOKEN={v}2\n",
    "no_managed_key": "OTHER={v}\n",
    "hard_value": 'API_TOKEN="{v}\\nhas \' and \\" and ends \\\\"\n',
}


@pytest.mark.parametrize("kind", sorted(FAILING_SOURCES))
def test_failing_or_warning_source_shows_no_value(base, capture, capfd, kind):
    value = sentinel()
    text = FAILING_SOURCES[kind].format(v=value)
    data = text.encode("utf-8", "surrogateescape")
    old = sentinel()
    scenario = make(base, "", f"API_TOKEN={old}\n", on_change=hook(base)[1])
    scenario.write_source(data)

    for args in ((), ("--check",), ("-v",), ("-v", "--dry-run")):
        code, shown = run_main(scenario, capture, capfd, *args)
        assert code in (0, 1, 3), (kind, code)
        assert_not_shown(shown, [value, old])
    env_file = base / "hook.env"
    if env_file.exists():
        assert_not_shown([("hook environment", env_file.read_text())], [value, old])


@pytest.mark.parametrize("kind", ["world_writable", "group_readable", "target_symlink",
                                  "target_nul", "target_hardlink", "hook_fails",
                                  "hook_times_out"])
def test_refused_or_failing_job_shows_no_value(base, capture, capfd, kind):
    value, old = sentinel(), sentinel()
    scenario = make(base, f"API_TOKEN={value}\n", f"API_TOKEN={old}\nLOCAL=1\n")
    if kind == "world_writable":
        scenario.source.chmod(0o666)
    elif kind == "group_readable":
        scenario.source.chmod(0o640)
    elif kind == "target_symlink":
        real = base / "elsewhere.env"
        os.replace(scenario.target, real)
        scenario.target.symlink_to(real)
    elif kind == "target_nul":
        scenario.write_target(f"API_TOKEN={old}\nX=\x00{old}\n")
    elif kind == "target_hardlink":
        os.link(scenario.target, base / "second-link")
    elif kind == "hook_fails":
        scenario.write_config(on_change="/bin/sh -c 'echo $SECRETSYNC_CHANGED; exit 3'")
    elif kind == "hook_times_out":
        scenario.write_config(on_change="/bin/sleep 30", on_change_timeout=1)

    code, shown = run_main(scenario, capture, capfd, "-v")

    assert code in (0, 1), code
    assert_not_shown(shown, [value, old])
    assert capture.journal, "nothing reached the journal"
