"""secretsync: copy managed keys from a shared secrets file into application .env files."""

__version__ = "0.1.0"
