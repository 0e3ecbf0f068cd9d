"""The ``secretsync`` command: arguments, the report on stdout, exit codes.

This is the only module that prints to stdout or decides the exit status.
"""

import argparse
import os

from secretsync import __version__, apply, report, runner
from secretsync.config import CONFIG_DIR, CONFIG_FILE, Config, load
from secretsync.errors import ConfigError, JobError, LockError, UsageError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DRIFT = 3
COMMANDS = ("sync", "backups", "restore")

DESCRIPTION = """\
Copy the keys each job manages from a shared secrets file into an application's .env file,
leaving every other line alone. Values are never printed or logged, only key names."""

USAGE = """\
secretsync [-c FILE] [--dry-run | --check] [-q | -v] [--wait SECONDS]
                  [--lock-file FILE] [sync] [JOB ...]
       secretsync [-c FILE] backups [JOB]
       secretsync [-c FILE] [--wait SECONDS] [--lock-file FILE] restore JOB [BACKUP]"""

EPILOG = f"""\
commands:
  [sync] [JOB ...]       sync all jobs, or the named ones (the default command)
  backups [JOB]          list the backups of all jobs, or of one
  restore JOB [BACKUP]   put a backup back over JOB's target (the newest by default),
                         saving the current target as a backup first

A job named like a command is synced with "secretsync sync NAME".
configuration: {CONFIG_FILE}, then {CONFIG_DIR}/*.conf (see secretsync.conf(5))
exit status: 0 ok, 1 a job failed or the lock is held, 2 usage or configuration error,
  3 with --check: a job would change"""


def parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    p = argparse.ArgumentParser(
        prog="secretsync", description=DESCRIPTION, epilog=EPILOG, usage=USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-c", "--config", metavar="FILE",
                   help=f"read only FILE, not {CONFIG_FILE} and {CONFIG_DIR}")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true",
                      help="report what would change; write nothing, run no hook")
    mode.add_argument("--check", action="store_true",
                      help="like --dry-run, but exit 3 if any job would change")
    talk = p.add_mutually_exclusive_group()
    talk.add_argument("-q", "--quiet", action="store_true",
                      help="no report on stdout; warnings and errors only")
    talk.add_argument("-v", "--verbose", action="store_true",
                      help="also show every log entry on stderr")
    p.add_argument("--wait", metavar="SECONDS", type=_seconds,
                   help="wait up to SECONDS for another run to finish instead of exiting 1")
    p.add_argument("--lock-file", metavar="FILE", default=apply.LOCK_FILE,
                   help=f"the lock file (default {apply.LOCK_FILE})")
    p.add_argument("--version", action="version", version=f"secretsync {__version__}")
    p.add_argument("words", nargs="*", metavar="COMMAND/JOB", help=argparse.SUPPRESS)
    return p


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds")
    return value


class Output:
    """The report on stdout, silent with --quiet.

    A reader that went away (``secretsync | head -1``) or a full disk ends the report, never
    the run: every job still runs and is still logged.
    """

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def line(self, text: str = "") -> None:
        if self.quiet:
            return
        try:
            print(text, flush=True)
        except OSError:
            self.quiet = True
            _point_at_devnull(1)  # so that the interpreter's exit flush cannot fail either


def _point_at_devnull(fd: int) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    if null != fd:
        os.dup2(null, fd)
        os.close(null)


def _ensure_standard_fds() -> None:
    """Open /dev/null on stdin, stdout or stderr if one was closed.

    Otherwise the next file secretsync opens (a target's temp file, the lock) would take that
    number, and log lines or hook output written to "stderr" would land in it.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            _point_at_devnull(fd)


def main(argv: list[str] | None = None) -> int:
    """Run the command; return its exit status."""
    _ensure_standard_fds()
    args = parser().parse_args(argv)
    report.setup(verbose=args.verbose, quiet=args.quiet)
    words = list(args.words)
    command = words.pop(0) if words and words[0] in COMMANDS else "sync"
    out = Output(args.quiet)
    try:
        if command != "sync" and (args.dry_run or args.check):
            raise UsageError(f"{command} does not take --dry-run or --check")
        config = load(args.config)
        if command == "backups":
            return _backups(config, words, out)
        if command == "restore":
            return _restore(config, words, args, out)
        return _sync(config, words, args, out)
    except (ConfigError, UsageError) as error:
        report.error(str(error))
        return EXIT_USAGE
    except (LockError, JobError) as error:
        report.error(str(error))
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # A bug: one line, no traceback, no message that might quote.
        report.error(f"internal error ({type(error).__name__})")
        return EXIT_FAILED


def _sync(config: Config, names: list[str], args, out: Output) -> int:
    jobs = config.select(names)
    dry_run = args.dry_run or args.check
    if not jobs:
        message = f"no jobs configured in {', '.join(config.files)}"
        out.line(message)
        report.run_finished(message, 0, dry_run)
        return EXIT_OK

    sources = runner.Sources()
    if dry_run:
        results = [_report_job(runner.run_job(job, sources, True), out) for job in jobs]
    else:
        with apply.RunLock(args.lock_file, args.wait):
            results = [_report_job(runner.run_job(job, sources, False), out) for job in jobs]

    counts = {status: sum(r.status == status for r in results)
              for status in (runner.UPDATED, runner.WOULD_UPDATE, runner.IN_SYNC, runner.FAILED)}
    changed = counts[runner.WOULD_UPDATE] if dry_run else counts[runner.UPDATED]
    label = "check: " if args.check else "dry run: " if dry_run else ""
    summary = (
        f"{label}{len(results)} job{'s' * (len(results) != 1)}: "
        f"{changed} {'would be updated' if dry_run else 'updated'}, "
        f"{counts[runner.IN_SYNC]} in sync, {counts[runner.FAILED]} failed"
        f"{'; nothing written' if dry_run else ''}"
    )
    out.line(summary)
    report.run_finished(summary, counts[runner.FAILED], dry_run)
    if counts[runner.FAILED]:
        return EXIT_FAILED
    if args.check and changed:
        return EXIT_DRIFT
    return EXIT_OK


def _report_job(result: runner.JobResult, out: Output) -> runner.JobResult:
    """Print one job's part of the report: its target, each key by name, the outcome."""
    out.line(f"{result.job.name}: {result.job.target}")
    plan = result.plan
    if plan is not None:
        for label, keys in (("add", plan.added), ("change", plan.changed),
                            ("remove", plan.removed)):
            for key in keys:
                out.line(f"  {label:<7} {key}")
        for key in plan.stale:
            out.line(f"  stale   {key} (gone from the source; kept, remove_missing = no)")
    if result.status == runner.UPDATED:
        out.line(f"  updated; backup {result.backup}" if result.backup else
                 "  created (no previous content to back up)")
    elif result.status == runner.FAILED:
        if result.written:
            out.line(f"  updated; backup {result.backup}" if result.backup else "  created")
        out.line(f"  failed: {result.error}")
    elif result.status == runner.WOULD_UPDATE and result.created:
        out.line("  would create")
    else:
        out.line(f"  {result.status}")
    return result


def _backups(config: Config, names: list[str], out: Output) -> int:
    if len(names) > 1:
        raise UsageError("backups takes at most one job name")
    jobs = config.select(names)
    for job in jobs:
        backups = apply.list_backups(job.backup_dir, job.name)
        print(f"{job.name}: {len(backups)} backup{'s' * (len(backups) != 1)} in "
              f"{job.backup_dir}/{job.name}")
        for backup in reversed(backups):
            print(f"  {backup.name}  {backup.taken:%Y-%m-%d %H:%M:%S} UTC  {backup.size} bytes")
    return EXIT_OK


def _restore(config: Config, words: list[str], args, out: Output) -> int:
    if not 1 <= len(words) <= 2:
        raise UsageError("usage: secretsync restore JOB [BACKUP]")
    job = config.select(words[:1])[0]
    with apply.RunLock(args.lock_file, args.wait):
        try:
            result = runner.restore(job, words[1] if len(words) > 1 else None)
        except JobError as error:
            report.failed(job.name, job.target, str(error))
            return EXIT_FAILED
    out.line(f"{job.name}: restored {job.target} from {result.backup.path}")
    out.line(f"  previous content saved as {result.saved}" if result.saved else
             "  (the target did not exist)")
    return EXIT_OK
