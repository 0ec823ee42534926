"""One trainer per run folder: an ``flock`` on ``RUN/.lock`` held for the trainer's lifetime.

The kernel drops the lock when its holder exits, however it exits (kill -9 included), so a
stale lock file never blocks a rerun and nothing has to clean it up. The file records who
holds it, so that a second trainer can say which process to wait for or stop. Light module
(no torch): ``syphus train`` checks the folder before it starts the launcher.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
from pathlib import Path

from schemas.errors import SyphusError

LOCK_NAME = ".lock"


def _not_a_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise SyphusError(f"{out}: is a file, not a run folder; give --out a folder")


def _busy_message(out: Path, holder: dict) -> str:
    pid = holder.get("pid", "unknown")
    host = holder.get("host")
    launcher = holder.get("launcher_pid")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    by = f", started by syphus train pid {launcher}" if launcher else ""
    return (
        f"{out}: another trainer is writing this run folder (pid {pid}{where}{by}); "
        "wait for it to finish or stop it, or use a new --out"
    )


def _read_holder(f) -> dict:
    f.seek(0)
    try:
        data = json.loads(f.read() or "{}")
    except ValueError:
        return {}  # the holder took the lock but has not written itself yet
    return data if isinstance(data, dict) else {}


def _try_lock(f, path: Path) -> bool:
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise SyphusError(f"{path}: cannot lock the run folder ({e.strerror}); use a local --out") from e


def hold_run_lock(out: Path, launcher_pid: int | None = None):
    """Lock ``out`` for this process until the returned file is closed (or the process ends).

    Raises SyphusError naming the folder and the holder's pid when another trainer has it.
    """
    _not_a_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    f = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the trainer's lifetime
    if not _try_lock(f, path):
        holder = _read_holder(f)
        f.close()
        raise SyphusError(_busy_message(out, holder))
    f.seek(0)
    f.truncate()
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    if launcher_pid:
        me["launcher_pid"] = launcher_pid
    f.write(json.dumps(me) + "\n")
    f.flush()
    return f


def check_run_unlocked(out: Path) -> None:
    """Raise the same one-line error as ``hold_run_lock`` if a trainer holds ``out`` now;
    takes nothing and creates nothing."""
    _not_a_folder(out)
    path = out / LOCK_NAME
    try:
        # read-write: an exclusive lock on NFS (emulated with fcntl locks) needs write access
        f = open(path, "r+", encoding="utf-8")  # noqa: SIM115
    except (FileNotFoundError, PermissionError):
        return  # nothing to check here; the trainer itself still takes the lock
    with f:
        if _try_lock(f, path):
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            return
        holder = _read_holder(f)
    raise SyphusError(_busy_message(out, holder))
