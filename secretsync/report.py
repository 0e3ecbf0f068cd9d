"""Logging: structured entries in the journal, readable lines on stderr.

Every entry is built from job names, paths, counts and key names; a value from a secrets file
is never passed to a log call. Messages are formatted before they are logged and no ``%``
arguments are used, so python3-systemd's ``CODE_ARGS`` field stays empty. Logging must never
fail a sync: errors inside the logging machinery are swallowed, not printed.
"""

import logging
import os
import sys
from typing import Sequence

from secretsync.plan import Plan

try:
    from systemd import journal
except ImportError:  # Only outside the Debian package; the journal is then silently absent.
    journal = None

IDENTIFIER = "secretsync"
MESSAGE_UPDATED = "2a0ff627dce945a0bb07e46449dc0ff8"
MESSAGE_FAILED = "33d36fe493d546329eb956a697623d03"
MESSAGE_RUN = "2572f1132eae40e58c6aff7cc72421a5"
JOURNAL_SOCKET = "/run/systemd/journal/socket"

# The function the journal handler sends through; tests replace it to see every field.
JOURNAL_SENDER = journal.send if journal else None

log = logging.getLogger("secretsync")


def _send(message, /, **fields) -> None:
    # Positional-only: JournalHandler passes every attribute of the log record as a keyword,
    # and a formatted record has one called `message`.
    JOURNAL_SENDER(message, **fields)


def _stream_is_journal(fd: int) -> bool:
    """Whether ``fd`` is the journal stream systemd connected (``JOURNAL_STREAM``)."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


class _StderrFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        label = {logging.WARNING: "warning: ", logging.ERROR: "error: "}.get(record.levelno, "")
        return f"{IDENTIFIER}: {label}{record.getMessage()}"


def setup(verbose: bool = False, quiet: bool = False) -> None:
    """Send log entries to the journal and, unless stderr is the journal, to stderr.

    On stderr come warnings and errors; with ``verbose``, or where no journald runs
    (containers, CI) and not ``quiet``, every entry, so that what the journal would hold is
    still seen.
    """
    logging.raiseExceptions = False
    log.handlers.clear()
    log.setLevel(logging.DEBUG)
    log.propagate = False

    if journal is not None:
        handler = journal.JournalHandler(
            level=logging.DEBUG if verbose else logging.INFO,
            sender_function=_send,
            SYSLOG_IDENTIFIER=IDENTIFIER,
        )
        log.addHandler(handler)

    if not _stream_is_journal(2):
        handler = logging.StreamHandler(sys.stderr)
        journald = journal is not None and os.path.exists(JOURNAL_SOCKET)
        handler.setLevel(logging.DEBUG if verbose else
                         logging.INFO if not journald and not quiet else logging.WARNING)
        handler.setFormatter(_StderrFormatter())
        log.addHandler(handler)


def _names(keys: Sequence[str]) -> str:
    return " ".join(keys)


def _some_names(keys: Sequence[str], shown: int = 20) -> str:
    """Key names for a message line: the first ``shown``, then how many more (fields have all)."""
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return " ".join(keys[:shown]) + more


def _fields(job: str, target: str, **more: str) -> dict[str, str]:
    return {"SECRETSYNC_JOB": job, "SECRETSYNC_TARGET": target, **more}


def warning(job: str, target: str, message: str) -> None:
    """Log a warning about one job."""
    log.warning(f"{job}: {message}", extra=_fields(job, target))


def updated(job: str, target: str, plan: Plan, backup: str | None, dry_run: bool,
            created: bool) -> None:
    """Log that a job updated or created (or, in a dry run, would) its target."""
    added, changed, removed = plan.added, plan.changed, plan.removed
    counts = f"{len(added)} added, {len(changed)} changed, {len(removed)} removed"
    keys = "; ".join(
        f"{label}: {_some_names(names)}"
        for label, names in (("added", added), ("changed", changed), ("removed", removed))
        if names
    )
    verb = "create" if created else "update"
    if dry_run:
        message = f"{job}: would {verb} {target} ({counts}; {keys}) [dry run]"
    elif created:
        message = f"{job}: created {target} ({counts}; {keys}; nothing to back up)"
    else:
        message = f"{job}: updated {target} ({counts}; {keys}; backup {backup})"
    fields = _fields(
        job, target,
        SECRETSYNC_ADDED=_names(added),
        SECRETSYNC_CHANGED=_names(changed),
        SECRETSYNC_REMOVED=_names(removed),
        SECRETSYNC_BACKUP=backup or "",
    )
    if dry_run:
        fields["SECRETSYNC_DRY_RUN"] = "1"
    else:
        fields["MESSAGE_ID"] = MESSAGE_UPDATED
    log.info(message, extra=fields)


def restored(job: str, target: str, backup: str, saved: str | None) -> None:
    """Log that a backup was put back over a job's target."""
    where = f"previous content saved as {saved}" if saved else "there was no previous content"
    log.info(f"{job}: restored {target} from {backup} ({where})",
             extra=_fields(job, target, SECRETSYNC_BACKUP=saved or "",
                           MESSAGE_ID=MESSAGE_UPDATED))


def failed(job: str, target: str, message: str) -> None:
    """Log that a job failed, with the one-line reason."""
    log.error(f"{job}: {message}", extra=_fields(job, target, MESSAGE_ID=MESSAGE_FAILED))


def error(message: str) -> None:
    """Log an error that is not about one job (configuration, lock)."""
    log.error(message)


def run_finished(summary: str, failures: int, dry_run: bool) -> None:
    """Log the summary line of a whole run."""
    log.info(summary, extra={"MESSAGE_ID": MESSAGE_RUN,
                             "SECRETSYNC_FAILED": str(failures),
                             "SECRETSYNC_DRY_RUN": "1" if dry_run else "0"})
