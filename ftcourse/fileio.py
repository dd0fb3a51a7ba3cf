"""Safe file writing: atomic replaces, and no silent overwrite of a user's files."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ftcourse.errors import CourseError

__all__ = [
    "atomic_directory", "atomic_file", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "ensure_writable_dir",
    "file_lock", "jsonl_text", "lock_holder", "MIN_FREE_BYTES", "release_file_lock", "sha256_file", "slug", "try_file_lock",
    "write_output", "write_outputs",
]

#: Free space an output folder must have before work that writes into it starts.
MIN_FREE_BYTES = 16 * 2**20


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A temporary file next to ``path`` to write; on success it replaces ``path``, on error it is removed.

    The file gets the permissions a plain ``open(path, "w")`` would give (0666 less the umask),
    not the 0600 of a temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        os.close(fd)
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one (see :func:`atomic_file`)."""
    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def jsonl_text(records: Iterable[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def write_output(path: str | Path, data: bytes | str, overwrite: bool = False) -> Path:
    """Atomically write an output file; refuse to replace a *different* existing file.

    Writing identical bytes again is a no-op, so re-running a step is safe.
    """
    return write_outputs({path: data}, overwrite)[0]


def write_outputs(files: Mapping[str | Path, bytes | str], overwrite: bool = False,
                  inputs: Iterable[str | Path | None] = ()) -> list[Path]:
    """Like :func:`write_output` for several files, checked together: if any would replace a
    different existing file (and not ``overwrite``), or any of the ``inputs`` (with or without ``overwrite``), none is written."""
    payloads = {Path(p): d.encode("utf-8") if isinstance(d, str) else d for p, d in files.items()}
    sources = [Path(p) for p in inputs if p is not None and Path(p).is_file()]
    if hit := next(((p, s) for p in payloads for s in sources if p.exists() and os.path.samefile(p, s)), None):
        output, source = hit
        raise CourseError(
            f"{output} is an input of this step{'' if output == source else f' ({source})'}: writing it would replace the data "
            "being read, so nothing was written (overwrite does not change this).",
            "write the outputs to another folder (output_dir / splits_dir; --output_dir / --splits_dir on the command line).",
        )
    clashes = [p for p, d in payloads.items() if not overwrite and p.exists() and p.read_bytes() != d]
    if clashes:
        raise CourseError(
            f"{', '.join(map(str, clashes))} already exist(s) with different contents; not overwriting.",
            "pass overwrite=True (--overwrite on the command line), or choose another output folder.",
        )
    return [atomic_write_bytes(p, d) for p, d in payloads.items()]


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """An exclusive inter-process lock held on ``path`` (created if missing); works on every OS (``filelock``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path)):
        yield


def _holder_file(lock_path: Path) -> Path:
    return lock_path.with_name(lock_path.name + ".json")


def try_file_lock(path: str | Path) -> FileLock | None:
    """Take the exclusive lock on ``path`` now, without waiting; ``None`` when another process holds it.

    The holder is recorded beside the lock (``<path>.json``: process id, host, time) for :func:`lock_holder`;
    give the lock back with :func:`release_file_lock` (the operating system frees it when the process ends).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return None
    atomic_write_json(_holder_file(path), {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")})
    return lock


def release_file_lock(lock: FileLock) -> None:
    """Give back a lock taken by :func:`try_file_lock`; its files are removed while it is still held (no litter is left,
    and a process that opened the old file meanwhile finds it unlinked and counts it as taken)."""
    path = Path(lock.lock_file)
    _holder_file(path).unlink(missing_ok=True)
    path.unlink(missing_ok=True)
    lock.release()


def lock_holder(path: str | Path) -> str:
    """Who holds the lock on ``path``, as recorded by :func:`try_file_lock`: ``"process 123 on host (since ...)"``."""
    try:
        holder = json.loads(_holder_file(Path(path)).read_text())
        return f"process {holder['pid']} on {holder['host']} (since {holder['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def ensure_writable_dir(folder: str | Path, name: str = "output_dir", min_free: int = MIN_FREE_BYTES) -> Path:
    """Create ``folder`` if needed and prove a file can be written there, before any long work starts.

    ``name`` is the parameter the error names. An existing file, a folder that cannot be written
    or a disk with less than ``min_free`` bytes free is a :class:`CourseError`.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CourseError(f"{name} {folder} is an existing file, not a folder; nothing was run.",
                          f"pass a folder for {name} (it is created if missing), or move the file away.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        raise CourseError(f"Cannot write to {name} {folder} ({exc.strerror or exc}); nothing was run.",
                          f"pass a {name} you can write to, or fix the folder's permissions.") from None
    if free < min_free:
        raise CourseError(f"{name} {folder} is on a disk with only {free / 2**20:.1f} MB free; nothing was run.",
                          f"free at least {min_free / 2**20:.0f} MB there, or pass another {name}.")
    return folder


@contextlib.contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Build a folder in a temporary sibling, then swap it into place in one rename.

    If the body raises, the half-built folder is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        tmp.chmod(0o777 & ~_umask())  # a plain mkdir's permissions, not mkdtemp's 0700
        yield tmp
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def slug(text: str) -> str:
    """A file or folder name from any text: runs of characters other than letters, digits, ``_``, ``.``, ``-`` become ``-``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")
