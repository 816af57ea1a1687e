"""The exit codes of `bas` and the daemon's runs (a module of constants: the CLI loads it at start-up).

0 done; 1 done with per-object errors; 2 usage or config error; 3 held by a safety rule;
4 another run holds the lock; 5 interrupted; 6 a target failed as a whole; 70 internal error.
"""

from __future__ import annotations

EXIT_OK, EXIT_ERRORS, EXIT_USAGE, EXIT_HELD, EXIT_LOCKED = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 5  # stopped between changes (SIGTERM to the daemon); the next run does the rest
EXIT_TARGET_FAILED = 6  # a target failed as a whole (unreachable, base DN missing); others went on
EXIT_INTERNAL = 70  # an unexpected error, a bug (sysexits' EX_SOFTWARE); never Python's default 1
