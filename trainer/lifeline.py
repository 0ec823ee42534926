"""Training processes live no longer than the ``syphus train`` that started them.

``syphus train`` starts the ``deepspeed`` launcher, which starts ``launch.py``, which starts
one process per rank. A kill -9 of ``syphus train`` runs no cleanup of its own, and the
launchers only forward signals they receive, so without help the ranks train on as orphans
while a rerun starts a second trainer on the same folder. Two ties close that gap:

- the launcher child gets ``PR_SET_PDEATHSIG`` (SIGTERM when its parent dies): on several
  nodes DeepSpeed's pdsh runner answers SIGTERM by stopping the remote ranks;
- every rank on this machine watches the ``syphus train`` process (named in
  ``SYPHUS_TRAIN_LAUNCHER`` as ``host:pid``) through a pidfd and exits the moment it is gone.

Light module (no torch): the CLI imports it before it starts anything.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import threading
import time

LAUNCHER_ENV = "SYPHUS_TRAIN_LAUNCHER"
_PR_SET_PDEATHSIG = 1


def launcher_env() -> dict[str, str]:
    """Environment entries that tie the processes started from here to this process."""
    return {LAUNCHER_ENV: f"{socket.gethostname()}:{os.getpid()}"}


def die_with_parent():
    """A ``preexec_fn`` for ``subprocess``: the child gets SIGTERM when this process dies.

    None where the platform has no ``prctl`` (the ranks' own watch still applies).
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()  # resolved here: the preexec_fn runs between fork and exec

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def launcher_pid() -> int | None:
    """The pid of the ``syphus train`` that started this process on this machine, if any."""
    value = os.environ.get(LAUNCHER_ENV, "")
    host, _, pid = value.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None  # not started by syphus train, or on another node than its launcher
    return int(pid)


def exit_with_launcher() -> int | None:
    """Exit this process as soon as its ``syphus train`` is gone; returns that pid (or None
    when this process was not started by ``syphus train`` on this machine)."""
    pid = launcher_pid()
    if pid is not None:
        threading.Thread(target=_watch, args=(pid,), name="syphus-lifeline", daemon=True).start()
    return pid


def _watch(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        _stop(pid)
    except (AttributeError, OSError):
        # no pidfd (not Linux, or an old kernel): ask about the pid once a second
        while _alive(pid):
            time.sleep(1.0)
        _stop(pid)
    else:
        select.select([fd], [], [])  # a pidfd turns readable when its process exits
        _stop(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop(pid: int) -> None:
    print(
        f"error: syphus train (pid {pid}) is gone; stopping this training process",
        file=sys.stderr,
        flush=True,
    )
    os._exit(1)  # from a thread: nothing else may keep writing the run folder
