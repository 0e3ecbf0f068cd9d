"""Read and check the configuration: every section of the INI files is a job.

``/etc/secretsync.conf`` is read first, then every ``/etc/secretsync.d/*.conf`` in name order,
a later file overriding an option an earlier one set; ``-c FILE`` reads only FILE. Options in
``[DEFAULT]`` apply to every job. Everything is checked before any job runs, and the first
problem is reported naming its file, section and option.
"""

import configparser
import glob
import grp
import os
import pwd
import re
import shlex
import stat
from dataclasses import dataclass

from secretsync.errors import ConfigError
from secretsync.plan import Rules

CONFIG_FILE = "/etc/secretsync.conf"
CONFIG_DIR = "/etc/secretsync.d"
DEFAULT_BACKUP_DIR = "/var/backups/secretsync"
DEFAULT_SECTION = "DEFAULT"

OPTIONS = (
    "source", "target", "sync", "preserve", "remove_missing", "create", "owner", "group",
    "mode", "backup_dir", "keep_backups", "on_change", "on_change_timeout",
)
REQUIRED = ("source", "target", "sync")
# Job names become directory names under backup_dir and words on the command line.
_JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]*")
_PATTERN_SEPARATORS = re.compile(r"[\s,]+")


@dataclass(frozen=True)
class Job:
    """One section of the configuration, checked and converted."""

    name: str
    source: str
    target: str
    rules: Rules
    create: bool
    owner: int | None
    group: int | None
    mode: int | None
    backup_dir: str
    keep_backups: int
    on_change: tuple[str, ...]
    on_change_timeout: float


@dataclass(frozen=True)
class Config:
    """The jobs in file order, and the files they were read from."""

    jobs: tuple[Job, ...]
    files: tuple[str, ...]

    def select(self, names: list[str]) -> list[Job]:
        """The named jobs (all of them for no names), or a ConfigError for an unknown one."""
        if not names:
            return list(self.jobs)
        by_name = {job.name: job for job in self.jobs}
        unknown = [name for name in names if name not in by_name]
        if unknown:
            raise ConfigError(f"no job named {unknown[0]!r} in {', '.join(self.files)}")
        return [by_name[name] for name in dict.fromkeys(names)]


def config_files(path: str | None) -> list[str]:
    """The files a run reads: ``path`` alone, or the main file and the drop-in directory."""
    if path is not None:
        return [path]
    drop_ins = sorted(glob.glob(os.path.join(glob.escape(CONFIG_DIR), "*.conf")))
    if not os.path.exists(CONFIG_FILE) and not drop_ins:
        raise ConfigError(f"{CONFIG_FILE}: does not exist")
    return ([CONFIG_FILE] if os.path.exists(CONFIG_FILE) else []) + drop_ins


def load(path: str | None = None) -> Config:
    """Read, merge and check the configuration files."""
    files = config_files(path)
    # option -> (value, file, section) for [DEFAULT], and per job; jobs keep first-seen order.
    defaults: dict[str, tuple[str, str, str]] = {}
    sections: dict[str, dict[str, tuple[str, str, str]]] = {}
    origins: dict[str, str] = {}
    for file in files:
        for section, options in _read(file).items():
            origins.setdefault(section, file)
            merged = defaults if section == DEFAULT_SECTION else sections.setdefault(section, {})
            merged.update({option: (value, file, section) for option, value in options.items()})

    for option, (_, file, _) in defaults.items():
        if option not in OPTIONS:
            raise ConfigError(f"{file}: [{DEFAULT_SECTION}] {option}: unknown option")
    jobs = tuple(
        _job(name, {**defaults, **options}, origins[name]) for name, options in sections.items()
    )
    return Config(jobs, tuple(files))


def _read(file: str) -> dict[str, dict[str, str]]:
    """Parse one INI file into section -> option -> value, with [DEFAULT] as a plain section."""
    # A default_section that no header can name keeps [DEFAULT] an ordinary section here, so
    # each option's file is known; the merge above applies the defaults.
    parser = configparser.ConfigParser(
        interpolation=None, default_section="\0", strict=True, empty_lines_in_values=False
    )
    try:
        with open(file, encoding="utf-8") as stream:
            _check_trusted(file, os.fstat(stream.fileno()))
            parser.read_file(stream)
    except OSError as error:
        raise ConfigError(f"{file}: cannot read: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not valid UTF-8") from None
    except configparser.Error as error:
        # The library's messages quote the offending line, which could be anything (a secrets
        # file given to -c by mistake): name only the line number.
        raise ConfigError(f"{file}: {_syntax_problem(error)}") from None
    return {section: dict(parser.items(section)) for section in parser.sections()}


def _check_trusted(file: str, st: os.stat_result) -> None:
    """Refuse a configuration another user could have written: its hooks run as root."""
    if st.st_uid not in (0, os.geteuid()):
        raise ConfigError(f"{file}: owned by uid {st.st_uid}, not root; refusing it "
                          "(its on_change commands would run as root)")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(f"{file}: writable by group or others (mode "
                          f"{stat.S_IMODE(st.st_mode):04o}); refusing it "
                          "(its on_change commands would run as root)")


def _syntax_problem(error: configparser.Error) -> str:
    if isinstance(error, configparser.MissingSectionHeaderError):
        return f"line {error.lineno}: a [section] header must come before any option"
    if isinstance(error, configparser.DuplicateSectionError):
        return f"line {error.lineno}: section [{error.section}] appears twice"
    if isinstance(error, configparser.DuplicateOptionError):
        return f"line {error.lineno}: [{error.section}] {error.option}: set twice"
    if isinstance(error, configparser.ParsingError):
        return f"line {error.errors[0][0]}: not an 'option = value' line"
    return "not a valid INI file"


def _job(name: str, options: dict[str, tuple[str, str, str]], section_file: str) -> Job:
    """Check one section's options (its own and the defaults) and build its Job."""
    if not _JOB_NAME.fullmatch(name):
        raise ConfigError(
            f"{section_file}: [{name}]: a job name is letters, digits and _ . @ + - "
            "starting with a letter or digit"
        )
    for option, (_, file, _) in options.items():
        if option not in OPTIONS:
            raise ConfigError(f"{file}: [{name}] {option}: unknown option")
    for option in REQUIRED:
        if option not in options:
            raise ConfigError(f"{section_file}: [{name}] {option}: required option missing")

    value = _Values(options)
    return Job(
        name=name,
        source=value.path("source"),
        target=value.path("target"),
        rules=Rules(
            sync=value.patterns("sync", required=True),
            preserve=value.patterns("preserve"),
            remove_missing=value.boolean("remove_missing", False),
        ),
        create=value.boolean("create", False),
        owner=value.account("owner", pwd.getpwnam, "user"),
        group=value.account("group", grp.getgrnam, "group"),
        mode=value.mode("mode"),
        backup_dir=value.path("backup_dir", DEFAULT_BACKUP_DIR),
        keep_backups=value.number("keep_backups", 30, int, minimum=1),
        on_change=value.command("on_change"),
        on_change_timeout=value.number("on_change_timeout", 60.0, float, minimum=0.001),
    )


class _Values:
    """Converters for one job's options; each error names file, section and option."""

    def __init__(self, options: dict[str, tuple[str, str, str]]) -> None:
        self._options = options

    def _raw(self, option: str) -> str | None:
        entry = self._options.get(option)
        return entry[0].strip() if entry else None

    def _error(self, option: str, problem: str) -> ConfigError:
        _, file, section = self._options[option]
        return ConfigError(f"{file}: [{section}] {option}: {problem}")

    def path(self, option: str, default: str | None = None) -> str:
        raw = self._raw(option)
        if raw is None:
            return default
        if not os.path.isabs(raw) or raw.endswith("/"):
            raise self._error(option, "must be an absolute path")
        return os.path.normpath(raw)

    def patterns(self, option: str, required: bool = False) -> tuple[str, ...]:
        raw = self._raw(option)
        patterns = tuple(p for p in _PATTERN_SEPARATORS.split(raw or "") if p)
        if required and not patterns:
            raise self._error(option, "needs at least one key pattern")
        return patterns

    def boolean(self, option: str, default: bool) -> bool:
        raw = self._raw(option)
        if raw is None:
            return default
        try:
            return configparser.ConfigParser.BOOLEAN_STATES[raw.lower()]
        except KeyError:
            raise self._error(option, f"{raw!r} is not yes or no") from None

    def account(self, option: str, lookup, kind: str) -> int | None:
        raw = self._raw(option)
        if raw is None:
            return None
        if raw.isdigit():
            # (uid_t)-1 means "leave as it is" to chown: not a usable id.
            if int(raw) >= 0xFFFFFFFF:
                raise self._error(option, f"{raw} is not a valid {kind} id")
            return int(raw)
        try:
            entry = lookup(raw)
        except KeyError:
            raise self._error(option, f"no such {kind} {raw!r}") from None
        return entry[2]

    def mode(self, option: str) -> int | None:
        raw = self._raw(option)
        if raw is None:
            return None
        if not re.fullmatch(r"0?[0-7]{3}", raw):
            raise self._error(option, f"{raw!r} is not an octal mode such as 0640")
        mode = int(raw, 8)
        if mode & 0o002:
            raise self._error(option, f"{raw} would let every user change the target")
        return mode

    def number(self, option: str, default, kind, minimum):
        raw = self._raw(option)
        if raw is None:
            return default
        try:
            number = kind(raw)
        except ValueError:
            raise self._error(option, f"{raw!r} is not a number") from None
        if not number >= minimum:
            raise self._error(option, f"must be at least {minimum}")
        return number

    def command(self, option: str) -> tuple[str, ...]:
        raw = self._raw(option)
        if not raw:
            return ()
        try:
            return tuple(shlex.split(raw))
        except ValueError as error:
            raise self._error(option, f"cannot be split into words: {error}") from None
