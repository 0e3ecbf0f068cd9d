"""The exceptions secretsync raises on purpose.

Every message names a file, a section, an option, a key or a line number, and never a value
read from a secrets file: these messages reach stderr, the journal and the exit report.
"""


class Error(Exception):
    """An expected failure, shown to the user as one line."""


class ConfigError(Error):
    """The configuration cannot be used; nothing is done and the command exits 2."""


class UsageError(Error):
    """The command line is wrong (an unknown job, a missing backup); exit 2."""


class JobError(Error):
    """One job cannot be synced; the other jobs still run and the command exits 1."""


class FlushError(JobError):
    """A target was replaced but its directory could not be flushed: the change happened."""


class LockError(Error):
    """Another run holds the lock; the command exits 1."""
