"""One atomic writer for every file the project replaces: a uniquely named temporary file in the same
folder (so processes writing the same file at once never share one), flushed and fsynced, renamed
over the target, then the folder fsynced. A crash leaves the old file or the new one, never a mix."""
import os
import signal
import tempfile
import threading
from contextlib import contextmanager
from typing import Callable, IO, Iterator


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str, write: Callable[[IO], None], binary: bool = True) -> None:
    """``write(f)`` into a temporary file, then replace ``path`` with it (its permissions as a plain open's)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp's 0600 -> 0644 under umask 022, as the host's files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_text(path: str, text: str) -> None:
    write_atomic(path, lambda f: f.write(text), binary=False)


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) until the block is done: a run interrupted while it writes its checkpoints
    stops right after them, with every file whole (a KeyboardInterrupt inside torch.save fails the write
    half-way, which looks like a full disk). The signal is recorded, not masked: a process-directed
    signal goes to any thread that does not block it, and torch has threads of its own."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if pending and callable(old):
        old(signal.SIGINT, None)  # Python's default handler: KeyboardInterrupt, now that the files are whole
    elif pending and old == signal.SIG_DFL:
        raise KeyboardInterrupt
