"""secretsync-generator: the drop-in that makes the configured directories writable.

Runs on the host without root: the generator's functions are called with the configuration
paths pointed at a temporary directory. The booted test (test_deb_systemd.py) shows systemd
applying the drop-in.
"""

import importlib.machinery
import importlib.util
from pathlib import Path

import pytest

GENERATOR = Path(__file__).resolve().parents[2] / "ops" / "systemd" / "secretsync-generator"


@pytest.fixture
def generator(tmp_path, monkeypatch):
    """The generator module, reading tmp_path/secretsync.conf and tmp_path/secretsync.d."""
    loader = importlib.machinery.SourceFileLoader("secretsync_generator", str(GENERATOR))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    monkeypatch.setattr(module, "CONFIG", str(tmp_path / "secretsync.conf"))
    monkeypatch.setattr(module, "CONFIG_DIR", str(tmp_path / "secretsync.d"))
    monkeypatch.setattr(module, "GENERATOR_DIR", str(tmp_path / "generator"))
    (tmp_path / "secretsync.d").mkdir()
    return module


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _dropin(generator, tmp_path: Path) -> str:
    generator.generate(str(tmp_path / "generator"))
    return (tmp_path / "generator" / "secretsync.service.d" /
            "50-secretsync-paths.conf").read_text()


def _settings(text: str) -> list:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_generator_grants_each_target_directory_and_backup_dir(generator, tmp_path):
    _write(tmp_path / "secretsync.conf",
           "[DEFAULT]\nsync = A_*\n\n"
           "[inv]\nsource = /opt/shared/a.env\ntarget = /opt/inv/.env\n\n"
           "[web]\nsource = /opt/shared/a.env\ntarget = /srv/web/app/.env\n"
           "backup_dir = /srv/backups\n")
    # A later file moves a job's target, as secretsync reads it.
    _write(tmp_path / "secretsync.d" / "10-inv.conf", "[inv]\ntarget = /etc/inv/env\n")

    assert _settings(_dropin(generator, tmp_path)) == [
        "[Service]",
        'ReadWritePaths="-/etc/inv"',
        'ReadWritePaths="-/srv/backups"',
        'ReadWritePaths="-/srv/web/app"',
        'ReadWritePaths="-/var/backups/secretsync"',
    ]


def test_generator_with_no_job_grants_nothing(generator, tmp_path):
    _write(tmp_path / "secretsync.conf", "# [app]\n# target = /opt/app/.env\n")
    assert _settings(_dropin(generator, tmp_path)) == ["[Service]"]


def test_generator_quotes_spaces_and_escapes_percent(generator, tmp_path):
    _write(tmp_path / "secretsync.conf",
           "[a]\nsource = /s.env\ntarget = /srv/my app/100%/.env\nsync = *\n")
    assert 'ReadWritePaths="-/srv/my app/100%%"' in _settings(_dropin(generator, tmp_path))


@pytest.mark.parametrize("path, relaxed", [
    ("/home/app/.env", "ProtectHome=read-only"),
    ("/root/app.env", "ProtectHome=read-only"),
    ("/tmp/app/.env", "PrivateTmp=no"),
    ("/var/tmp/app/.env", "PrivateTmp=no"),
])
def test_generator_relaxes_the_sandbox_only_for_hidden_paths(generator, tmp_path, path, relaxed):
    _write(tmp_path / "secretsync.conf", f"[a]\nsource = /s.env\ntarget = {path}\nsync = *\n")
    assert relaxed in _settings(_dropin(generator, tmp_path))

    _write(tmp_path / "secretsync.conf", "[a]\nsource = /s.env\ntarget = /opt/a/.env\nsync = *\n")
    settings = _settings(_dropin(generator, tmp_path))
    assert not any(s.startswith(("ProtectHome=", "PrivateTmp=")) for s in settings)


def test_generator_relaxes_protect_home_for_a_source_under_home(generator, tmp_path):
    _write(tmp_path / "secretsync.conf",
           "[a]\nsource = /home/ops/shared.env\ntarget = /opt/a/.env\nsync = *\n")
    settings = _settings(_dropin(generator, tmp_path))
    assert "ProtectHome=read-only" in settings
    assert 'ReadWritePaths="-/home/ops"' not in settings  # read, not written


@pytest.mark.parametrize("target", ['/srv/a"b/.env', "/srv/a\\b/.env", "relative/.env"])
def test_generator_skips_a_path_it_cannot_quote(generator, tmp_path, target):
    _write(tmp_path / "secretsync.conf", f"[a]\nsource = /s.env\ntarget = {target}\nsync = *\n")
    assert _settings(_dropin(generator, tmp_path)) == [
        "[Service]", 'ReadWritePaths="-/var/backups/secretsync"']


def test_generator_writes_nothing_for_a_broken_config(generator, tmp_path, capsys):
    _write(tmp_path / "secretsync.conf", "TOKEN=s3cr3t-value\n")
    generator.generate(str(tmp_path / "generator"))
    assert not (tmp_path / "generator").exists()
    err = capsys.readouterr().err
    assert "no drop-in written" in err and "s3cr3t" not in err


def test_check_warns_only_when_the_config_changed_since_generation(generator, tmp_path, capsys):
    _write(tmp_path / "secretsync.conf", "[a]\nsource = /s.env\ntarget = /opt/a/.env\nsync = *\n")
    generator.generate(str(tmp_path / "generator"))
    generator.check()
    assert capsys.readouterr().err == ""

    _write(tmp_path / "secretsync.d" / "b.conf",
           "[b]\nsource = /s.env\ntarget = /opt/b/.env\nsync = *\n")
    generator.check()
    err = capsys.readouterr().err
    assert err.startswith("<4>secretsync: ") and "systemctl daemon-reload" in err


def test_main_rejects_unknown_arguments(generator, capsys):
    assert generator.main(["secretsync-generator"]) == 2
    assert "usage:" in capsys.readouterr().err
