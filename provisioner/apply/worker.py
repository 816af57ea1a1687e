"""A worker process applying one target: ``python -m provisioner.apply.worker`` (see workers.py).

Reads a pickled ``workers.Job`` on stdin, waits for the parent's go (one byte ``g``:
the core changes are committed), applies the target with the executor's own
``apply_target`` against its own state-store connection, and writes the pickled answer
on stdout: ``("ok", TargetResult)`` or ``("error", traceback)``. Logs go to stderr,
configured and masked like the parent's.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import time
import traceback


def main() -> int:
    """Run one job from stdin; always answer on stdout."""
    # systemd and a terminal signal the whole process group; the parent decides (stdin).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = threading.Event()
    out = sys.stdout.buffer
    try:
        from provisioner import logs
        from provisioner.apply import executor
        from provisioner.apply.executor import apply_target
        from provisioner.core.states import TargetOutcome
        from provisioner.state.store import StateStore

        job = pickle.load(sys.stdin.buffer)  # noqa: S301 - from our parent, over a private pipe
        logs.configure(job.log_level, job.log_format, stream=sys.stderr)
        # "g" once the parent committed the core; anything else (or its end) means stop.
        if sys.stdin.buffer.read(1) != b"g":
            pickle.dump(("ok", executor.TargetResult(job.plan.target, TargetOutcome.INTERRUPTED)), out)
            out.flush()
            return 0
        # Any byte after that, or the parent gone (end of stdin): stop between changes.
        threading.Thread(target=lambda: (sys.stdin.buffer.read(1), stop.set()), daemon=True).start()
        executor.BATCH = job.batch
        store = StateStore(job.store_url, check=False)
        try:
            result = apply_target(
                job.plan,
                store,
                job.connector,
                job.run_id,
                job.as_of,
                job.soft_delete,
                job.retry,
                time.sleep,
                None,
                stop,
            )
        finally:
            store.close()
        answer: tuple = ("ok", result)
    except BaseException:  # noqa: BLE001 - everything goes back to the parent, which raises it
        answer = ("error", traceback.format_exc(limit=8))
    try:
        pickle.dump(answer, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()
    except BrokenPipeError:
        return 1  # the parent is gone; what was done is committed and logged
    return 0


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    # No interpreter shutdown: the thread waiting on stdin holds its lock, and finalizing
    # around it aborts. Everything the worker did is committed and answered by now.
    os._exit(code)
