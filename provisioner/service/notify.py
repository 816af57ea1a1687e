"""sd_notify: telling systemd (``Type=notify``, ``WatchdogSec=``) how the daemon is doing.

The protocol is one datagram of ``KEY=value`` lines to the AF_UNIX socket named by
``$NOTIFY_SOCKET`` (a path, or an abstract name starting with ``@``); done here in a few
lines rather than with a new dependency. Without ``$NOTIFY_SOCKET`` (not started by
systemd) every call does nothing. A notification that cannot be sent is logged and
dropped: the daemon's work never depends on it (systemd then restarts a daemon whose
watchdog stays silent, which is the point of the watchdog).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import structlog

log = structlog.get_logger("bas.notify")


def _address(env: Mapping[str, str]) -> str | None:
    addr = env.get("NOTIFY_SOCKET", "")
    if not addr:
        return None
    return "\0" + addr[1:] if addr.startswith("@") else addr  # "@name": Linux abstract socket


def send(*fields: str, env: Mapping[str, str] = os.environ) -> bool:
    """Send ``KEY=value`` fields in one datagram; True when sent, False without a socket."""
    addr = _address(env)
    if addr is None:
        return False
    message = "\n".join(f.replace("\n", " ") for f in fields).encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.setblocking(False)  # a receiver that does not read must never stall the daemon
            s.connect(addr)
            s.sendall(message)
    except OSError as exc:
        log.warning("cannot notify systemd", error=str(exc))
        return False
    return True


def watchdog_seconds(env: Mapping[str, str] = os.environ) -> float | None:
    """The watchdog interval systemd expects pings within (``WatchdogSec=``), or None."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None  # no watchdog, or it is meant for another process
    return int(usec) / 1_000_000


def ready(status: str, env: Mapping[str, str] = os.environ) -> bool:
    """The daemon is up: scheduler started, metrics served."""
    return send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}", env=env)


def watchdog(status: str, env: Mapping[str, str] = os.environ) -> bool:
    """The heartbeat: the daemon's main loop is alive; the status line says what it does."""
    return send("WATCHDOG=1", f"STATUS={status}", env=env)


def stopping(env: Mapping[str, str] = os.environ) -> bool:
    """The daemon is shutting down (the run in flight is stopping between changes)."""
    return send("STOPPING=1", "STATUS=stopping: the run in flight stops between changes", env=env)
