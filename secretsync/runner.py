"""Run jobs: read the source and the target, plan, back up, write, run the hook, log.

Each job is isolated: whatever goes wrong in one becomes its JobResult and the next job runs.
"""

import os
from dataclasses import dataclass, field

from secretsync import apply, hooks, report
from secretsync.config import Job
from secretsync.envfile import Document, decode, parse
from secretsync.errors import Error, FlushError, JobError
from secretsync.plan import Plan, make_plan

UPDATED = "updated"
WOULD_UPDATE = "would update"
IN_SYNC = "in sync"
FAILED = "failed"


@dataclass
class JobResult:
    """What happened to one job, for the report."""

    job: Job
    status: str
    plan: Plan | None = None
    backup: str | None = None
    error: str | None = None
    created: bool = False
    written: bool = False
    warnings: list[str] = field(default_factory=list)

    def warn(self, messages: list[str]) -> None:
        """Record warnings and log them at once, before the job's outcome."""
        for message in messages:
            self.warnings.append(message)
            report.warning(self.job.name, self.job.target, message)


class Sources:
    """Each source file read, checked and parsed once per run, however many jobs use it."""

    def __init__(self) -> None:
        self._loaded: dict[str, tuple[Document | None, list[str], str | None]] = {}

    def get(self, path: str) -> tuple[Document, list[str]]:
        """The parsed source and its permission warnings; JobError if it cannot be used."""
        if path not in self._loaded:
            try:
                data, warnings = apply.read_source(path)
                self._loaded[path] = (parse(decode(data, path)), warnings, None)
            except JobError as error:
                self._loaded[path] = (None, [], str(error))
        document, warnings, error = self._loaded[path]
        if error is not None:
            raise JobError(error)
        return document, warnings


def run_job(job: Job, sources: Sources, dry_run: bool) -> JobResult:
    """Sync one job; never raises for anything that can go wrong with its files."""
    result = JobResult(job, FAILED)
    try:
        _sync(job, sources, dry_run, result)
    except Error as error:
        result.status, result.error = FAILED, str(error)
    except OSError as error:
        # Anything not already turned into a JobError: name the file, never quote contents.
        result.status = FAILED
        result.error = f"{error.filename or job.target}: {error.strerror or 'I/O error'}"
    except Exception as error:  # A bug must not stop the other jobs or print a traceback.
        result.status = FAILED
        result.error = f"internal error ({type(error).__name__}); nothing more written"
    if result.status == FAILED:
        report.failed(job.name, job.target, result.error)
    return result


def _sync(job: Job, sources: Sources, dry_run: bool, result: JobResult) -> None:
    source, source_warnings = sources.get(job.source)
    result.warn(source_warnings)

    with apply.TargetDirectory(job.target) as directory:
        if not dry_run:
            directory.remove_leftovers()
        current = directory.read()
        if current is None and not job.create:
            raise JobError(f"{job.target}: target does not exist (set create = yes to create it)")
        target = parse(decode(current.data, job.target)) if current else Document(())
        result.created = current is None

        plan = make_plan(source, target, job.rules, job.source, job.target)
        result.plan = plan
        result.warn(list(plan.warnings))
        if not plan.changes:
            result.status = IN_SYNC
            if not dry_run:
                # Finish what a run killed between its rename and its pruning left undone.
                apply.prune_backups(job.backup_dir, job.name, job.keep_backups)
            return
        if dry_run:
            result.status = WOULD_UPDATE
            report.updated(job.name, job.target, plan, None, dry_run=True,
                           created=result.created)
            return

        result.backup, unflushed = _replace(job, directory, current, plan.text.encode("utf-8"))
    result.written = True
    result.status = UPDATED
    report.updated(job.name, job.target, plan, result.backup, dry_run=False,
                   created=result.created)
    if unflushed:
        raise JobError(unflushed)
    if job.on_change:
        env = hooks.hook_environment(job.name, job.target, plan.added, plan.changed,
                                     plan.removed)
        hooks.run_hook(job.on_change, env, job.on_change_timeout)


def _replace(job: Job, directory: apply.TargetDirectory, current: apply.TargetFile | None,
             data: bytes) -> tuple[str | None, str | None]:
    """Back up the current target, replace it with ``data``, prune the job's backups.

    Returns the backup's path (None for a new target) and, if the new file is in place but
    its directory could not be flushed, that problem. If the target could not be replaced, the
    backup just made is deleted again (the target is unchanged) and the JobError raised.
    """
    backup = apply.write_backup(job.backup_dir, job.name, current.data) if current else None
    uid, gid, mode = _ownership(job, current)
    unflushed = None
    try:
        directory.replace(data, uid, gid, mode, current)
    except FlushError as error:
        unflushed = str(error)
    except JobError:
        if backup:
            apply.discard_backup(backup)
        raise
    if backup:
        apply.prune_backups(job.backup_dir, job.name, job.keep_backups, backup)
    return backup, unflushed


def _ownership(job: Job, current: apply.TargetFile | None) -> tuple[int, int, int]:
    """Owner, group and mode of the new target: configured, else the old target's.

    A target secretsync creates is root's (or the configured owner's), mode 0600.
    """
    uid = job.owner if job.owner is not None else current.uid if current else os.geteuid()
    gid = job.group if job.group is not None else current.gid if current else os.getegid()
    mode = job.mode if job.mode is not None else current.mode if current else 0o600
    return uid, gid, mode


@dataclass
class RestoreResult:
    """What ``restore`` put back and where the replaced content went."""

    backup: apply.Backup
    saved: str | None


def restore(job: Job, backup_name: str | None) -> RestoreResult:
    """Put a backup of ``job`` back over its target, saving the current content first."""
    backup = apply.read_backup(job.backup_dir, job.name, backup_name)
    data = apply.backup_content(backup)
    with apply.TargetDirectory(job.target) as directory:
        directory.remove_leftovers()
        current = directory.read()
        saved, unflushed = _replace(job, directory, current, data)
    report.restored(job.name, job.target, backup.path, saved)
    if unflushed:
        raise JobError(unflushed)
    if job.on_change:
        added, changed, removed = _key_changes(current.data if current else b"", data)
        env = hooks.hook_environment(job.name, job.target, added, changed, removed)
        hooks.run_hook(job.on_change, env, job.on_change_timeout)
    return RestoreResult(backup, saved)


def _key_changes(old: bytes, new: bytes) -> tuple[list[str], list[str], list[str]]:
    """Names of the keys a restore added, changed and removed (empty if either won't parse)."""
    try:
        before = parse(decode(old, "")).values()
        after = parse(decode(new, "")).values()
    except JobError:
        return [], [], []
    return ([k for k in after if k not in before],
            [k for k in after if k in before and after[k] != before[k]],
            [k for k in before if k not in after])
