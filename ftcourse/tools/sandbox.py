"""A sandbox for one untrusted submission: Debian's bubblewrap (``bwrap``), resource limits, nothing left running.

What runs inside sees: the system's ``/usr`` and a few files of ``/etc``, the Python installation and the ``ftcourse``
package (read-only, the package at ``/opt/ftcourse``), the paths it is given read-only, one writable folder (the
workspace, at ``/workspace``; ``/tmp`` is a folder in it), its own ``/proc`` and a minimal ``/dev``. It has no network
(a namespace with only loopback), no view of other processes, no other file of the machine, and only the environment
it is given. Limits: CPU time, address space per process, processes (threads) of the sandbox's user, file size.

When the grader runs as root, the sandbox runs as the real user *nobody* (bwrap without a user namespace, then
``setpriv``), so the process limit applies and file permissions protect what is not mounted; as any other user, it runs
as that user inside a user namespace. Every process of the sandbox lives in its PID namespace: killing the sandbox's
process group — or the grader dying (``--die-with-parent``) — ends them all.

Without bubblewrap (macOS, Windows, a Linux without user namespaces) :func:`unavailable` says why; ``--trusted`` grading
then runs the same command unsandboxed (:class:`Sandbox` with ``trusted=True``), with the limits where ``prlimit`` exists.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import ftcourse
from ftcourse.errors import CourseError

__all__ = ["ETC_FILES", "INSIDE", "INSTALL", "Limits", "NOBODY", "PACKAGE_INSIDE", "Run", "Sandbox", "unavailable"]

INSTALL = "sudo apt-get install -y bubblewrap   (Debian/Ubuntu; `make sandbox` does it)"
#: Where the workspace and the package are inside the sandbox.
INSIDE = "/workspace"
PACKAGE_INSIDE = "/opt/ftcourse"
NOBODY = 65534
#: The only files of /etc a kernel sees (the dynamic loader's cache, user and host names, time zone, fonts).
ETC_FILES = ("alternatives", "fonts", "group", "hosts", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf", "passwd")
_ERROR_TAIL = 4000  # characters of the sandbox's own error output kept


@dataclass(frozen=True)
class Limits:
    """What one submission may use: wall time (enforced by the grader), CPU seconds, address space per process,
    processes and threads beyond those its user already runs, and the size of one file."""

    seconds: int = 900
    memory_bytes: int = 16 * 2**30
    processes: int = 512
    file_bytes: int = 4 * 2**30


@dataclass(frozen=True)
class Run:
    returncode: int | None  # None: killed at the time limit
    timed_out: bool
    first_line: str  # the first line the command wrote to its standard output (what came after is read and dropped)
    errors: str  # the end of the sandbox's error output (bwrap's, the command's)


def _as_root() -> bool:
    return os.geteuid() == 0


def _namespace_options() -> list[str]:
    if _as_root():  # real root: bwrap mounts as root, setpriv then becomes nobody
        return ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                "--cap-add", "CAP_SETUID,CAP_SETGID"]
    return ["--unshare-all", "--uid", str(NOBODY), "--gid", str(NOBODY)]


def _user_switch() -> list[str]:
    if not _as_root():
        return []
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"]


def _system_mounts() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "lib", "lib32", "lib64", "libx32", "sbin"):
        host = Path("/") / name
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            args += ["--ro-bind", str(host), str(host)]
    args += [a for name in ETC_FILES if (Path("/etc") / name).exists() for a in ("--ro-bind", f"/etc/{name}", f"/etc/{name}")]
    return [*args, "--proc", "/proc", "--dev", "/dev"]


def _parents(target: str, mounted: list[str], made: set[str]) -> list[str]:
    """``--dir`` options (mode 0755) for the parents of ``target`` that neither an earlier mount nor an earlier ``--dir`` provides."""
    args: list[str] = []
    for parent in reversed(Path(target).parents[:-1]):
        if str(parent) not in made and not any(parent == Path(m) or Path(m) in parent.parents for m in mounted):
            args += ["--perms", "0755", "--dir", str(parent)]
            made.add(str(parent))
    return args


@functools.cache
def _readable_by_others(path: Path) -> bool:
    """True when every file under ``path`` can be read, and every folder entered, by any user."""
    if path.is_file():
        return bool(path.stat().st_mode & 0o004)
    for folder, dirs, files in os.walk(path):
        if not os.stat(folder).st_mode & 0o005 or any(not os.lstat(os.path.join(folder, f)).st_mode & 0o004 for f in files):
            return False
    return True


_STAGE: list[Path] = []


@functools.cache
def _staged(path: Path) -> Path:
    """A copy of ``path`` that the sandbox's user can read (root-only course files, e.g. a model saved with mode 0600), made
    once per process in a folder only root can enter."""
    if not _STAGE:
        _STAGE.append(Path(tempfile.mkdtemp(prefix="ftcourse-sandbox-stage-")))
        atexit.register(shutil.rmtree, _STAGE[0], True)
    target = _STAGE[0] / f"{len(os.listdir(_STAGE[0]))}-{path.name}"
    (shutil.copytree if path.is_dir() else shutil.copy2)(path, target)
    for folder, dirs, files in os.walk(target):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)
    return target


def _tasks_of(uid: int) -> int:
    """Processes and threads the user ``uid`` runs now (what RLIMIT_NPROC counts)."""
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid == uid:
                count += len(os.listdir(f"/proc/{pid}/task"))
        except OSError:  # it ended meanwhile
            continue
    return count


def _limit_options(limits: Limits) -> list[str]:
    if not shutil.which("prlimit"):
        return []
    nproc = limits.processes + _tasks_of(NOBODY if _as_root() else os.getuid()) if sys.platform == "linux" else limits.processes
    return ["prlimit", f"--cpu={limits.seconds * (os.cpu_count() or 1)}", f"--as={limits.memory_bytes}", f"--nproc={nproc}",
            f"--fsize={limits.file_bytes}", "--core=0", "--"]


@functools.cache
def unavailable() -> str | None:
    """Why this machine cannot sandbox a submission, or None when it can (bubblewrap installed and allowed to run)."""
    if sys.platform != "linux":
        return f"the sandbox needs Linux namespaces (bubblewrap); this system is {sys.platform}"
    missing = [tool for tool in ("bwrap", "prlimit", *(["setpriv"] if _as_root() else [])) if not shutil.which(tool)]
    if missing:
        return f"{', '.join(missing)} not installed ({'bubblewrap: ' + INSTALL if 'bwrap' in missing else 'util-linux'})"
    with tempfile.TemporaryDirectory(prefix="ftcourse-sandbox-probe-") as folder:
        probe = Sandbox({}, trusted=False)
        result = probe.run(["true"], Path(folder), {"PATH": "/usr/bin:/bin"}, Limits(seconds=30))
    if result.returncode != 0:
        return f"bubblewrap cannot create a sandbox here ({result.errors.strip()[-300:] or f'exit status {result.returncode}'})"
    return None


class Sandbox:
    """Runs commands, one submission at a time, each in a fresh sandbox over its workspace (see the module's docstring).

    ``readonly`` maps host paths to their paths inside (course data, configs, base models); ``trusted=True`` runs the
    commands unsandboxed instead, with the same environment and limits.
    """

    def __init__(self, readonly: Mapping[Path, str], trusted: bool = False):
        self.trusted = trusted
        self.readonly = dict(readonly)

    @property
    def package_path(self) -> str:
        """Where the ``ftcourse`` package's parent folder is for the command (what PYTHONPATH names)."""
        return str(Path(ftcourse.__file__).resolve().parent.parent) if self.trusted else PACKAGE_INSIDE

    def inside(self, workspace: Path) -> str:
        """The workspace's path as the command sees it."""
        return str(workspace) if self.trusted else INSIDE

    def prepare(self, workspace: Path, writable: list[Path]) -> None:
        """Give the sandbox's user the ``writable`` folders of the workspace (as root; otherwise they are the user's already)."""
        for folder in writable:
            folder.mkdir(parents=True, exist_ok=True)
            if _as_root() and not self.trusted:
                os.chown(folder, NOBODY, NOBODY)

    def _mounts(self, workspace: Path) -> list[str]:
        python = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
        sources = {**{p: str(p) for p in python if Path("/usr") not in (p, *p.parents)},
                   Path(ftcourse.__file__).resolve().parent: f"{PACKAGE_INSIDE}/ftcourse"}
        args, mounted, made = _system_mounts(), ["/usr", "/etc", "/proc", "/dev"], set()
        for source, target in sorted(sources.items(), key=lambda item: len(item[1])):
            if _as_root() and not _readable_by_others(source):
                raise CourseError(f"{source} is not readable by every user; the sandbox runs as nobody and cannot load Python from it.",
                                  f"make it readable (chmod -R o+rX {source}), or grade as a user other than root.")
            args += [*_parents(target, mounted, made), "--ro-bind", str(source), target]
            mounted.append(target)
        args += ["--bind", str(workspace), INSIDE, "--bind", str(workspace / ".tmp"), "/tmp"]
        for source, target in self.readonly.items():
            visible = _staged(source) if _as_root() and not _readable_by_others(source) else source
            args += ["--ro-bind", str(visible), target]
        return args

    def command(self, argv: list[str], workspace: Path, limits: Limits) -> list[str]:
        """The full command line: limits, then bubblewrap with its mounts (unless trusted), then ``argv``."""
        if self.trusted:
            return [*_limit_options(limits), *argv]
        (workspace / ".tmp").mkdir(exist_ok=True)
        if _as_root():
            os.chown(workspace / ".tmp", NOBODY, NOBODY)
        return [*_limit_options(limits), "bwrap", *_namespace_options(), "--die-with-parent", "--new-session",
                *self._mounts(workspace), "--chdir", INSIDE, "--", *_user_switch(), *argv]

    def run(self, argv: list[str], workspace: Path, env: Mapping[str, str], limits: Limits) -> Run:
        """Run ``argv`` with exactly ``env``; kill it and every process it started at ``limits.seconds`` or when the grader
        is interrupted (the exception then propagates)."""
        process = subprocess.Popen(self.command(argv, workspace, limits), env=dict(env), cwd=workspace, start_new_session=True,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        first: list[bytes] = []
        tail: collections.deque[str] = collections.deque(maxlen=64)
        readers = [threading.Thread(target=_drain, args=(process.stdout, first.append, 1), daemon=True),
                   threading.Thread(target=_drain, args=(process.stderr, lambda line: tail.append(line.decode("utf-8", "replace")), 0), daemon=True)]
        for reader in readers:
            reader.start()
        timed_out = False
        try:
            process.wait(timeout=limits.seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            _kill_group(process)
        for reader in readers:
            reader.join(timeout=5)
        line = first[0].decode("utf-8", "replace").strip() if first else ""
        return Run(None if timed_out else process.returncode, timed_out, line, "".join(tail)[-_ERROR_TAIL:])


def _drain(stream, keep, count: int) -> None:
    """Read ``stream`` to its end (a flood cannot block the writer or fill memory); ``keep`` its first ``count`` lines (0: all)."""
    for n, line in enumerate(iter(lambda: stream.readline(_ERROR_TAIL), b"")):
        if not count or n < count:
            keep(line)


def _kill_group(process: subprocess.Popen) -> None:
    """End the command and every process left in its group (a sandbox's other processes die with its PID namespace)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
