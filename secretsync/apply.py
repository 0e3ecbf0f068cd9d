"""Everything secretsync writes: targets, backups and the run lock. No other module writes.

Targets live in directories that belong to application users, who must not be able to turn a
root process against the host. So a target is reached through a file descriptor of its
directory, never by following a symlink in its own name (or one higher up that another user
could have placed), and every read, chown and chmod goes through a descriptor of the one file
that was checked. A target is replaced atomically: a new file in the same directory, written
and flushed with its final owner and mode, renamed over the old one, the directory flushed.
"""

import datetime
import errno
import fcntl
import os
import re
import secrets
import stat
import time
from dataclasses import dataclass

from secretsync.errors import FlushError, JobError, LockError, UsageError

LOCK_FILE = "/run/secretsync/secretsync.lock"
# Far above any real .env (a 1 MiB PEM bundle fits many times); a larger, or sparse, file
# is refused before it is read into memory.
MAX_FILE_BYTES = 64 << 20
_MAX_SYMLINKS = 40
_BACKUP_NAME = re.compile(r"\d{8}T\d{6}\.\d{6}Z\.env")
_BACKUP_TEMP = re.compile(r"\.\d{8}T\d{6}\.\d{6}Z\.env\.tmp")


_TEMP_RANDOM = re.compile(r"[0-9a-f]{16}")


def _is_temp_of(entry: str, name: str) -> bool:
    """Whether ``entry`` is a temp file secretsync made for the target ``name``."""
    prefix, suffix = f".{name}.secretsync-", ".tmp"
    return (entry.startswith(prefix) and entry.endswith(suffix)
            and _TEMP_RANDOM.fullmatch(entry[len(prefix):-len(suffix)]) is not None)


@dataclass(frozen=True)
class FileState:
    """The identity and content version of a file, to notice it changed under us."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> "FileState":
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(frozen=True)
class TargetFile:
    """A target as read: its bytes, owner, group, mode, extended attributes and state.

    The extended attributes carry a POSIX ACL (``system.posix_acl_access``) that may be what
    lets the application read its file; the new file gets them all.
    """

    data: bytes
    uid: int
    gid: int
    mode: int
    state: FileState
    xattrs: tuple[tuple[str, bytes], ...] = ()


def read_source(path: str) -> tuple[bytes, list[str]]:
    """Read a shared secrets file; return its bytes and warnings about its permissions.

    A source that others can write is refused: whoever can write it decides what every
    application receives.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise JobError(f"{path}: source does not exist") from None
    except PermissionError:
        raise JobError(f"{path}: permission denied reading the source{_as_root()}") from None
    except OSError as error:
        raise JobError(f"{path}: cannot open the source: {error.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise JobError(f"{path}: source is not a regular file")
        if st.st_mode & stat.S_IWOTH:
            raise JobError(f"{path}: source is world-writable; refusing to use it")
        warnings = []
        if st.st_mode & (stat.S_IRGRP | stat.S_IROTH):
            who = "every user" if st.st_mode & stat.S_IROTH else "its group"
            warnings.append(f"{path}: source is readable by {who} "
                            f"(mode {stat.S_IMODE(st.st_mode):04o}); it should be 0600")
        return _read_all(fd, path), warnings
    finally:
        os.close(fd)


def _as_root() -> str:
    return " (secretsync must run as root)" if os.geteuid() != 0 else ""


def _read_all(fd: int, path: str) -> bytes:
    too_big = JobError(f"{path}: larger than {MAX_FILE_BYTES >> 20} MiB; refusing to read it")
    chunks, size = [], 0
    try:
        if os.fstat(fd).st_size > MAX_FILE_BYTES:
            raise too_big
        while chunk := os.read(fd, 1 << 20):
            size += len(chunk)
            if size > MAX_FILE_BYTES:
                raise too_big
            chunks.append(chunk)
    except OSError as error:
        raise JobError(f"{path}: cannot read: {error.strerror}") from None
    return b"".join(chunks)


def _xattrs(fd: int, path: str) -> tuple[tuple[str, bytes], ...]:
    try:
        return tuple((name, os.getxattr(fd, name)) for name in os.listxattr(fd))
    except OSError as error:
        if error.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return ()
        raise JobError(f"{path}: cannot read its extended attributes: {error.strerror}") \
            from None


class TargetDirectory:
    """The directory holding a target, opened safely, and the target's name in it.

    Use as a context manager; every operation on the target goes through the directory's
    descriptor, so swapping the directory or a path component afterwards changes nothing.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self.name = os.path.basename(target)
        self._fd = _open_directory(os.path.dirname(target), target)

    def __enter__(self) -> "TargetDirectory":
        return self

    def __exit__(self, *exc_info) -> None:
        os.close(self._fd)

    def remove_leftovers(self) -> None:
        """Delete temp files an interrupted run of this target left behind."""
        for entry in os.listdir(self._fd):
            if _is_temp_of(entry, self.name):
                try:
                    os.unlink(entry, dir_fd=self._fd)
                except OSError:
                    pass  # gone already, or not a file secretsync made (a directory)

    def read(self) -> TargetFile | None:
        """Read the target, or return None if it does not exist.

        Refused: a symlink (never followed), anything but a regular file (a FIFO would hang,
        a device has side effects) and a file with other hard links (it would be another
        file's content going into a backup).
        """
        try:
            handle = os.open(self.name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self._fd)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise JobError(f"{self.target}: cannot open the target: {error.strerror}") from None
        try:
            st = os.fstat(handle)
            self._check_kind(st)
            # Reopening the checked descriptor through /proc opens that very inode, whatever
            # the name points to by now.
            fd = os.open(f"/proc/self/fd/{handle}",
                         os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        finally:
            os.close(handle)
        try:
            st = os.fstat(fd)
            self._check_kind(st)
            data = _read_all(fd, self.target)
            return TargetFile(data, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode),
                              FileState.of(st), _xattrs(fd, self.target))
        finally:
            os.close(fd)

    def _check_kind(self, st: os.stat_result) -> None:
        if stat.S_ISLNK(st.st_mode):
            raise JobError(f"{self.target}: target is a symlink; refusing to follow or replace it")
        if not stat.S_ISREG(st.st_mode):
            raise JobError(f"{self.target}: target is not a regular file; refusing it")
        if st.st_nlink > 1:
            raise JobError(
                f"{self.target}: target has {st.st_nlink} hard links; refusing to write it"
            )

    def replace(self, data: bytes, uid: int, gid: int, mode: int,
                old: TargetFile | None) -> None:
        """Atomically make the target hold ``data`` with the given owner, group and mode.

        ``old`` is the target as read (None: it did not exist); the new file gets its extended
        attributes (ACLs). If the target changed since it was read, nothing is written, so a
        concurrent edit is never lost. A JobError means the target is as it was, except
        FlushError: written, but maybe not yet on disk.
        """
        # tempfile cannot create relative to a directory descriptor, which is the point here,
        # so the temp name is made the same way: unpredictable, created exclusively.
        temp = f".{self.name}.secretsync-{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600 & mode, dir_fd=self._fd)
        except OSError as error:
            raise JobError(
                f"{self.target}: cannot create a temp file beside the target: {error.strerror}"
            ) from None
        try:
            try:
                os.fchmod(fd, 0o600 & mode)
                _write_all(fd, data)
                for name, value in old.xattrs if old else ():
                    _copy_xattr(fd, name, value, self.target)
                os.fchown(fd, uid, gid)
                # After the ACL: chmod sets its mask from the mode, as on the old file.
                os.fchmod(fd, mode)
                os.fsync(fd)
            finally:
                os.close(fd)
            self._check_unchanged(old.state if old else None)
            os.rename(temp, self.name, src_dir_fd=self._fd, dst_dir_fd=self._fd)
        except BaseException as error:
            try:
                os.unlink(temp, dir_fd=self._fd)
            except OSError:
                pass
            if isinstance(error, OSError):
                raise JobError(
                    f"{self.target}: cannot write the target: {error.strerror}; left unchanged"
                ) from None
            raise
        try:
            os.fsync(self._fd)
        except OSError as error:
            raise FlushError(
                f"{self.target}: written, but its directory could not be flushed to disk: "
                f"{error.strerror}"
            ) from None

    def _check_unchanged(self, expected: FileState | None) -> None:
        try:
            st = os.stat(self.name, dir_fd=self._fd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if expected is None and st is None:
            return
        if expected is None or st is None or FileState.of(st) != expected:
            raise JobError(f"{self.target}: target changed while syncing; left as it is")


def _open_directory(path: str, target: str) -> int:
    """Open ``path`` for use as a dir_fd, following only symlinks no other user could place.

    Each component is opened without following symlinks. A symlink is followed only when
    the directory it sits in is owned by root and writable by no one else; otherwise an
    application user who owns a directory on the way could point the path anywhere.
    """
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    parts = [p for p in path.split("/") if p]
    hops = 0
    try:
        while parts:
            part = parts.pop(0)
            try:
                child = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except FileNotFoundError:
                raise JobError(f"{target}: directory {path} does not exist") from None
            st = os.fstat(child)
            if stat.S_ISDIR(st.st_mode):
                os.close(fd)
                fd = child
                continue
            if not stat.S_ISLNK(st.st_mode):
                os.close(child)
                raise JobError(f"{target}: {part} in {path} is not a directory")
            os.close(child)
            parent = os.fstat(fd)
            hops += 1
            if parent.st_uid != 0 or parent.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise JobError(
                    f"{target}: {part} in {path} is a symlink in a directory other users can "
                    "write; refusing to follow it"
                )
            if hops > _MAX_SYMLINKS:
                raise JobError(f"{target}: too many symlinks in {path}")
            link = os.readlink(part, dir_fd=fd)
            if link.startswith("/"):
                os.close(fd)
                fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            parts[:0] = [p for p in link.split("/") if p]
        directory = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
    except OSError as error:
        raise JobError(f"{target}: cannot open directory {path}: {error.strerror}") from None
    finally:
        os.close(fd)
    return directory


def _copy_xattr(fd: int, name: str, value: bytes, target: str) -> None:
    try:
        os.setxattr(fd, name, value)
    except OSError as error:
        raise JobError(
            f"{target}: cannot give the new file the extended attribute {name}: "
            f"{error.strerror}; left unchanged"
        ) from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# Backups

@dataclass(frozen=True)
class Backup:
    """One saved copy of a target."""

    job: str
    name: str
    path: str
    size: int
    taken: datetime.datetime


def _job_backup_dir(backup_dir: str, job: str) -> str:
    return os.path.join(backup_dir, job)


def _ensure_private_dir(path: str) -> None:
    """Create ``path`` as a 0700 directory, or tighten it to 0700 if it exists."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise JobError(f"{path}: backup directory is a symlink; refusing to follow it")
    if not stat.S_ISDIR(st.st_mode):
        raise JobError(f"{path}: backup directory is not a directory")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)


def write_backup(backup_dir: str, job: str, data: bytes) -> str:
    """Save ``data`` (a target's old content) as a new backup of ``job``; return its path.

    The name is the UTC time, which sorts by time; the file is 0600 in a 0700 directory,
    written under a temp name and renamed, so a crash never leaves a partial backup.
    """
    directory = _job_backup_dir(backup_dir, job)
    try:
        if not os.path.isdir(backup_dir):
            os.makedirs(os.path.dirname(backup_dir), 0o755, exist_ok=True)
            _ensure_private_dir(backup_dir)
        _ensure_private_dir(directory)
        for entry in os.listdir(directory):
            if _BACKUP_TEMP.fullmatch(entry):
                os.unlink(os.path.join(directory, entry))

        moment = datetime.datetime.now(datetime.timezone.utc)
        while True:
            name = moment.strftime("%Y%m%dT%H%M%S.%fZ.env")
            path = os.path.join(directory, name)
            if not os.path.lexists(path):
                break
            moment += datetime.timedelta(microseconds=1)
        temp = os.path.join(directory, "." + name + ".tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            try:
                os.fchmod(fd, 0o600)
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temp, path)
        except BaseException:
            # A partial copy of secrets must not stay behind (nor hold the space it took).
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as error:
        raise JobError(
            f"{error.filename or directory}: cannot write the backup: {error.strerror}; "
            "target left unchanged"
        ) from None
    return path


def list_backups(backup_dir: str, job: str) -> list[Backup]:
    """The backups of ``job``, oldest first."""
    directory = _job_backup_dir(backup_dir, job)
    try:
        names = sorted(n for n in os.listdir(directory) if _BACKUP_NAME.fullmatch(n))
    except FileNotFoundError:
        return []
    except OSError as error:
        raise JobError(
            f"{directory}: cannot list backups: {error.strerror}{_as_root()}"
        ) from None
    backups = []
    for name in names:
        path = os.path.join(directory, name)
        taken = datetime.datetime.strptime(name[:-len(".env")], "%Y%m%dT%H%M%S.%fZ")
        backups.append(Backup(job, name, path, os.lstat(path).st_size,
                              taken.replace(tzinfo=datetime.timezone.utc)))
    return backups


def prune_backups(backup_dir: str, job: str, keep: int, taken: str | None = None) -> list[str]:
    """Delete all but the ``keep`` newest backups of ``job``; return the deleted paths.

    ``taken``, the backup this run just made, always stays, even where backups named after a
    clock that has since been set back sort after it.
    """
    others = [b for b in list_backups(backup_dir, job) if b.path != taken]
    old = others[:max(0, len(others) - (keep - (1 if taken else 0)))]
    for backup in old:
        try:
            os.unlink(backup.path)
        except FileNotFoundError:
            pass
    return [backup.path for backup in old]


def read_backup(backup_dir: str, job: str, name: str | None) -> Backup:
    """The named backup of ``job`` (the newest for None).

    No backup at all is a JobError (there is nothing to restore: exit 1); a name that is not
    among the backups is a UsageError (exit 2).
    """
    backups = list_backups(backup_dir, job)
    if not backups:
        raise JobError(f"{_job_backup_dir(backup_dir, job)}: job {job} has no backups")
    if name is None:
        return backups[-1]
    for backup in backups:
        if backup.name == name:
            return backup
    raise UsageError(f"{_job_backup_dir(backup_dir, job)}: no backup named {name!r}")


def discard_backup(path: str) -> None:
    """Delete a backup this run made for a change that was then not written."""
    try:
        os.unlink(path)
    except OSError:
        pass


def backup_content(backup: Backup) -> bytes:
    """The bytes saved in ``backup``."""
    try:
        fd = os.open(backup.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        raise JobError(f"{backup.path}: cannot open the backup: {error.strerror}") from None
    try:
        return _read_all(fd, backup.path)
    finally:
        os.close(fd)


# The run lock

class RunLock:
    """One secretsync run at a time that may write: an exclusive flock on a root-only file."""

    def __init__(self, path: str = LOCK_FILE, wait: float | None = None) -> None:
        self.path = os.path.abspath(path)
        self.wait = wait
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        try:
            # /run is a tmpfs: the lock's directory is gone after a boot until a run makes it.
            os.makedirs(os.path.dirname(self.path), 0o700, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                               0o600)
        except OSError as error:
            raise LockError(
                f"{self.path}: cannot open the lock file: {error.strerror}{_as_root()}"
            ) from None
        deadline = None if self.wait is None else time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as error:
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
            if deadline is None or time.monotonic() >= deadline:
                holder = self._holder()
                os.close(self._fd)
                waited = f" after waiting {self.wait:g} s" if self.wait else ""
                raise LockError(
                    f"another secretsync run{holder} holds the lock {self.path}{waited}"
                )
            time.sleep(0.05)
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)
        return self

    def _holder(self) -> str:
        try:
            pid = os.pread(self._fd, 32, 0).decode().strip()
        except (OSError, UnicodeDecodeError):
            return ""
        return f" (pid {pid})" if pid.isdigit() else ""

    def __exit__(self, *exc_info) -> None:
        os.close(self._fd)
