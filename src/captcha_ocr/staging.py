"""Writing a model directory as one transaction: lock it, build the new one beside it, swap.

``captcha-ocr train --out M`` never writes into ``M`` itself. It takes a lock (a second
writer is refused with a clear line), builds the new model in ``M.partial/`` (where the
resumable round checkpoints live too), and only when that directory is complete swaps
it in: one ``renameat2(RENAME_EXCHANGE)`` where the kernel and file system offer it,
else ``M -> M.prev``, ``M.partial -> M`` and the removal of ``M.prev``. A crash at any
instant leaves ``M`` holding the old model or the new one; the next writer finishes or
undoes a swap that was cut between its two renames.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from .modeldir import FILES, ModelError

__all__ = ["CHECKPOINT", "StagedModelDir", "fault"]

CHECKPOINT = "checkpoint"  # inside the staging directory: the resumable state
OURS = ".captcha-ocr-staging"  # marks the .partial and .prev folders this module made
MODEL_FILES = {FILES.weights, FILES.info, FILES.onnx, FILES.int8, FILES.history, FILES.curves,
               FILES.grid, FILES.calibration}
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def fault(point: str) -> None:
    """Test hook: die here, as a ``kill -9`` would, when ``CAPTCHA_OCR_KILL_AT`` names ``point``."""
    if os.environ.get("CAPTCHA_OCR_KILL_AT") == point:
        os.kill(os.getpid(), 9)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2``); False where that is not available."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(a))


def _listing(names: list[str], most: int = 4) -> str:
    shown = ", ".join(sorted(names)[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


class StagedModelDir:
    """``with StagedModelDir(out) as staged:`` lock ``out``, then ``staged.begin(resume)``
    gives the folder to write into, and ``staged.commit()`` swaps it in.

    Raises (on entering, ``begin``, ``commit``):
        ModelError: another process writes ``out``; ``out`` is a file or a folder that is
            not a model directory; an interrupted run is there and ``resume`` was not
            asked (or asked with nothing to resume); the folder cannot be written.
    """

    def __init__(self, out: str | Path) -> None:
        self.target = Path(out).absolute()
        name = self.target.name
        self.partial = self.target.with_name(name + ".partial")
        self.prev = self.target.with_name(name + ".prev")
        self.lock_path = self.target.with_name(f".{name}.lock")
        self._lock_fd: int | None = None

    # ------------------------------------------------------------ lock

    def __enter__(self) -> StagedModelDir:
        self._check_kind()  # before the lock file: a refused command leaves nothing behind
        if not (self.prev.exists() or self.partial.exists()):
            self._check_target()  # so is a folder of other files, where no recovery could change it
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ModelError(f"{self.target}: cannot write the model directory there "
                             f"({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ModelError(f"{self.target}: another captcha-ocr process (pid {holder}) is "
                             "writing this model directory; wait for it to finish (or, to "
                             "train beside it, choose another --out)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        try:
            self._recover()
            self._check_target()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock; the lock file (last pid) stays
            self._lock_fd = None

    # ------------------------------------------------------------ state on disk

    def _recover(self) -> None:
        """Finish or undo a swap cut between its renames; drop a finished run's leftovers.
        Folders named like ours but not marked as ours are the user's: refused, not touched."""
        for folder in (self.prev, self.partial):
            if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
                folder.rmdir()  # empty: nothing of anyone's (a removal of ours cut short)
            if folder.exists() and not (folder / OURS).is_file():
                raise ModelError(f"{folder}: exists and was not made by captcha-ocr; move it "
                                 f"or choose another --out (it would be in the way of {self.target.name})")
        if self.prev.exists():
            if self.target.exists():
                shutil.rmtree(self.prev)  # the swap completed; the old model was not yet removed
            else:
                os.rename(self.prev, self.target)  # cut between the renames: old model back
                (self.target / OURS).unlink(missing_ok=True)
            _fsync_dir(self.target.parent)
        if (self.target / CHECKPOINT).is_dir():
            shutil.rmtree(self.target / CHECKPOINT)  # swapped in, its checkpoint not yet removed
        if self.target.is_dir():
            (self.target / OURS).unlink(missing_ok=True)

    def _check_kind(self) -> None:
        t = self.target
        if t.is_symlink():
            raise ModelError(f"{t}: is a link; name the directory it points to instead")
        if t.exists() and not t.is_dir():
            raise ModelError(f"{t}: is a file, not a model directory; name a model directory")
        if any(p.exists() and not p.is_dir() for p in t.parents):
            raise ModelError(f"{t}: is under a file, not in a folder; name a model directory")

    def _check_target(self) -> None:
        """What ``_check_kind`` left to check: a directory's contents (after ``_recover``,
        which only ever puts a directory in place)."""
        t = self.target
        if not t.is_dir():
            return
        names = [p.name for p in t.iterdir() if not p.name.startswith(".")]
        if names and FILES.info not in names:
            raise ModelError(f"{t}: not empty and not a model directory (it holds "
                             f"{_listing(names)}); choose a new or empty --out (nothing was changed)")
        other = [n for n in names if n not in MODEL_FILES]
        if other:
            raise ModelError(f"{t}: holds files that are not part of a model ({_listing(other)}); "
                             "training replaces the whole directory: move them out or choose "
                             "another --out (nothing was changed)")

    def interrupted(self) -> bool:
        """Whether an interrupted run left a resumable state in the staging folder."""
        from . import checkpoint

        return checkpoint.exists(self.partial / CHECKPOINT)

    def drop_unstarted(self) -> None:
        """Remove the staging folder of a run that stopped before its first checkpoint:
        nothing in it to resume (a failed run left ``M.partial/`` behind)."""
        if not self.partial.is_dir() or self.interrupted():
            return
        # Our mark goes last: a removal cut short (a second Ctrl-C) leaves a folder the next
        # run still knows for ours, or an empty one, not another's in its way.
        for child in self.partial.iterdir():
            if child.name == OURS:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
        (self.partial / OURS).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.partial.rmdir()

    def begin(self, resume: bool) -> Path:
        """The empty (or, with ``resume``, the interrupted run's) folder to write into."""
        if resume:
            if not self.interrupted():
                raise ModelError(f"{self.target}: no interrupted run to resume (no "
                                 f"{self.partial.name}/{CHECKPOINT}); run without --resume")
            return self.partial
        if self.interrupted():
            raise ModelError(f"{self.target}: an interrupted run is in {self.partial}; add "
                             "--resume to continue it, or delete that folder to start again")
        if self.partial.exists():
            shutil.rmtree(self.partial)  # a run that died before its first checkpoint
        try:
            self.partial.mkdir()
            (self.partial / OURS).write_text(f"{os.getpid()}\n")
        except OSError as e:
            raise ModelError(f"{self.target}: cannot write the model directory there "
                             f"({e.strerror})") from None
        return self.partial

    @property
    def checkpoint_dir(self) -> Path:
        return self.partial / CHECKPOINT

    def commit(self, fault: Callable[[str], None] = fault) -> Path:
        """Swap the complete staging folder in as the model directory; returns it."""
        for p in self.partial.iterdir():
            if p.is_file():
                with open(p, "rb") as f:  # files written by others (plots) reach the disk too
                    os.fsync(f.fileno())
        _fsync_dir(self.partial)
        fault("before-swap")
        parent = self.target.parent
        if self.target.exists():
            # marked, so that wherever the old model is after a crash, recovery knows it
            (self.target / OURS).write_text(f"{os.getpid()}\n")
            if _exchange(self.partial, self.target):
                fault("after-exchange")
                _fsync_dir(parent)
                shutil.rmtree(self.partial)  # now the old model
            else:
                os.rename(self.target, self.prev)
                fault("between-renames")
                os.rename(self.partial, self.target)
                _fsync_dir(parent)
                shutil.rmtree(self.prev)
        else:
            os.rename(self.partial, self.target)
        fault("after-swap")
        _fsync_dir(parent)
        shutil.rmtree(self.target / CHECKPOINT, ignore_errors=True)
        (self.target / OURS).unlink(missing_ok=True)
        return self.target
