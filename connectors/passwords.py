"""Initial passwords for new accounts: generating them and handing them to the school office.

Owns the only place a password ever exists outside the directory: a root-only (0600)
CSV file per school and run in ``password_dir`` (itself 0700), one line per new account
(username; display name; password), for the school office to hand out. Passwords
never reach logs, the changelog or the state store.

Lines are appended and fsynced as each account is created rather than written at the
end: if the run dies halfway, the passwords of the accounts it did create are not lost.
The file is opened with O_NOFOLLOW so a planted symlink cannot redirect it.
"""

from __future__ import annotations

import csv
import io
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

import structlog

from provisioner.core.csv_cells import FORMULA_STARTS, neutralise
from provisioner.core.names import fold

log = structlog.get_logger("bas.passwords")

# No look-alikes (I l 1, O 0) and only symbols that survive being read aloud or typed
# on a Norwegian keyboard.
UPPER = "ABCDEFGHJKLMNPQRSTUVWXYZ"
LOWER = "abcdefghijkmnopqrstuvwxyz"
DIGITS = "23456789"
SYMBOLS = "-_.!#%+=?"
_CLASSES = (UPPER, LOWER, DIGITS, SYMBOLS)
_TOKEN_SPLIT = re.compile(r"[,.\-_#\s\t]+")  # AD's delimiters for the display-name check


def meets_complexity(password: str, avoid: Iterable[str] = ()) -> bool:
    """AD's "complexity" rule: three of four character classes, and no part of the name in it.

    AD refuses a password that contains the sAMAccountName, or any token of three or more
    characters of the display name (tokens split at , . - _ # space tab), ignoring case.
    """
    if sum(any(ch in cls for ch in password) for cls in _CLASSES) < 3:
        return False
    low = password.lower()
    for name in avoid:
        if not name:
            continue
        if len(name) >= 3 and name.lower() in low:
            return False
        for token in _TOKEN_SPLIT.split(name):
            if len(token) >= 3 and token.lower() in low:
                return False
    return True


def generate(length: int = 16, avoid: Iterable[str] = ()) -> str:
    """A random password (``secrets``) with every character class, not containing ``avoid``."""
    if length < 14:
        raise ValueError("initial passwords are at least 14 characters")
    avoid = list(avoid)
    alphabet = "".join(_CLASSES)
    while True:
        chars = [secrets.choice(cls) for cls in _CLASSES]
        chars += [secrets.choice(alphabet) for _ in range(length - len(chars))]
        # Shuffle with secrets so the class of each position is not predictable.
        for i in range(len(chars) - 1, 0, -1):
            j = secrets.randbelow(i + 1)
            chars[i], chars[j] = chars[j], chars[i]
        pw = "".join(chars)
        # Never a first character a spreadsheet reads as a formula (the CSV files).
        if not pw.startswith(FORMULA_STARTS) and meets_complexity(pw, avoid):
            return pw


def school_slug(name: str) -> str:
    """A file-name-safe form of a school's name: folded ASCII words joined by '-'."""
    words = [fold(w) for w in re.split(r"[\W_]+", name)]
    return "-".join(w for w in words if w) or "school"


class PasswordFiles:
    """Appends new accounts' passwords to one 0600 CSV file per school for one run."""

    HEADER = ("username", "display name", "password")

    def __init__(self, directory: Path, run_id: str) -> None:
        self.directory = Path(directory)
        self.run = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id) or "run"
        self.written: dict[str, Path] = {}  # school slug -> file, for reports and tests

    @classmethod
    def for_run(cls, directory: Path | None, run_id: str, enabled: bool) -> PasswordFiles | None:
        """This run's files, or None when initial passwords are off or have no folder."""
        return cls(directory, run_id) if enabled and directory else None

    def report(self, target: str) -> None:
        """Log which files this run wrote (their paths only, never their content)."""
        if self.written:
            log.info(
                "new accounts' passwords written",
                target=target,
                files=sorted(str(p) for p in self.written.values()),
            )

    def path_for(self, school: str) -> Path:
        """The file of one school in this run."""
        return self.directory / f"new-accounts-{school_slug(school)}-{self.run}.csv"

    def add(self, school: str, username: str, display_name: str, password: str) -> Path:
        """Append one account's line (with a header for a new file) and fsync it."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)  # mkdir honours the umask; the folder must be private
        path = self.path_for(school)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, flags, 0o600)
        try:
            os.fchmod(fd, 0o600)
            buf = io.StringIO()
            w = csv.writer(buf, delimiter=";", lineterminator="\r\n")  # Excel in Norway reads ';'
            if os.fstat(fd).st_size == 0:
                buf.write("\ufeff")  # a BOM, so Excel reads æ ø å as UTF-8
                w.writerow(self.HEADER)
            w.writerow([neutralise(v) for v in (username, display_name, password)])
            os.write(fd, buf.getvalue().encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        self.written[school_slug(school)] = path
        return path
