"""Registers the engine suite's fixtures; they and the helpers live in sandbox.py.

The helpers are not imported from this file because tests/robust/ has a conftest.py of its
own, and two modules named ``conftest`` cannot both be imported by that name.
"""

from sandbox import box, inproc, open_box  # noqa: F401 (fixtures, found by pytest by name)
