"""Allow ``python3 -m secretsync``."""

import sys

from secretsync.cli import main

sys.exit(main())
