"""Atomic artifact folders: a reader sees the old artifact or the new one, never half of one.

Every folder honed writes (index, run, report, audit, Triton model, dataset)
goes through :func:`atomic_dir`. It

- refuses to replace anything it did not write: an existing ``--out`` that is a
  file, a non-empty folder that is not an artifact of the same kind, or an
  artifact holding files the writer did not list, is an error unless ``force``;
- builds the new folder beside the old one and swaps the two in one atomic
  ``renameat2(RENAME_EXCHANGE)`` on Linux, or two renames elsewhere, and a later
  run finishes or rolls back a swap a kill interrupted (:func:`recover_swap`);
- writes ``honed-artifact.json``: the kind, and the size and sha256 of every
  file, which :func:`verify_artifact` checks on open, so a swapped or
  truncated file is refused rather than silently used.

New folders follow the user's umask.

Example:
    >>> from honed.retriever.atomic import atomic_dir, atomic_write_text
    >>> with atomic_dir("indexes/demo", kind="index") as tmp:      # doctest: +SKIP
    ...     (tmp / "manifest.json").write_text("{}")
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fnmatch
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import HonedError

ARTIFACT_FILE = "honed-artifact.json"
ARTIFACT_FORMAT = 1
# The file that marked each kind before honed-artifact.json existed: folders written
# by earlier versions are still recognised as "the same kind" and may be replaced.
LEGACY_MARKERS = {"index": "manifest.json", "report": "report.json", "rag-report": "report.json",
                  "audit": "summary.json", "run": "honed.json", "triton": "config.pbtxt",
                  "dataset": "build_stats.json"}
# Sub-artifacts other honed commands add inside an artifact later, with their own manifest.
ADDED_LATER = {"run": {"onnx"}}
# Files an artifact changes in place after it is written (documents added and deleted):
# not in the record; the document store checks its own FAISS file (retriever.store).
MUTABLE = {"index": ("store.sqlite", "store.sqlite-wal", "store.sqlite-shm", "index-*.faiss", ".index-*.faiss.*",
                     "bm25-*/", ".bm25-*/")}   # a trailing "/": a folder, every file in it mutable


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` through a temp file in the same folder and an atomic rename."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temp file in the same folder, fsync, then an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())   # mkstemp makes 0600; a written file follows the umask
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask sets as it reads)."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_DIGESTS: dict[tuple, str] = {}


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file, read in 1 MiB chunks.

    Remembered per process by the file's identity (inode, size, mtime and ctime;
    any write or rename changes the ctime), so opening an artifact hashes the
    model weights once, not once for its record and again for its fingerprint.
    """
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key in _DIGESTS:
        return _DIGESTS[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def _mutable(kind: str, rel: str) -> bool:
    """A top-level file the kind changes in place, or anything in (or the name of) such a top-level folder."""
    top, _, rest = rel.partition("/")
    for pat in MUTABLE.get(kind, ()):
        if pat.endswith("/") and fnmatch.fnmatch(top, pat[:-1]):
            return True
        if not rest and not pat.endswith("/") and fnmatch.fnmatch(rel, pat):
            return True
    return False


def _file_table(root: Path, kind: str) -> dict[str, dict]:
    table = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel != ARTIFACT_FILE and not _mutable(kind, rel):
            table[rel] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
    return table


def read_json(path: str | os.PathLike) -> dict:
    """A JSON object from `path`, or a one-line HonedError naming the file and line."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise HonedError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    except UnicodeDecodeError as e:
        raise HonedError(f"{path}: not UTF-8 text (bad byte at offset {e.start})") from None
    if not isinstance(obj, dict):
        raise HonedError(f"{path}: expected a JSON object")
    return obj


def read_artifact(path: str | os.PathLike) -> dict | None:
    """The folder's ``honed-artifact.json``, or None for a folder without one."""
    f = Path(path) / ARTIFACT_FILE
    if not f.exists():
        return None
    doc = read_json(f)
    if not isinstance(doc.get("files"), dict):
        raise HonedError(f"{f}: not a honed artifact record (no \"files\" table)")
    if doc.get("format") != ARTIFACT_FORMAT:
        raise HonedError(f"{f}: artifact format {doc.get('format')!r} is not supported "
                         f"(this honed reads format {ARTIFACT_FORMAT}); upgrade honed")
    return doc


def verify_artifact(path: str | os.PathLike, files: list[str] | None = None) -> None:
    """Check the size and sha256 of the artifact's files (or just `files`) against its record.

    A folder written before records existed passes unchecked.
    """
    root = Path(path)
    doc = read_artifact(root)
    if doc is None:
        return
    for rel in files if files is not None else list(doc["files"]):
        want = doc["files"].get(rel)
        p = root / rel
        if want is None:
            raise HonedError(f"{p}: not listed in {root / ARTIFACT_FILE}; the folder was changed by hand")
        if not p.is_file():
            raise HonedError(f"{p}: missing (listed in {ARTIFACT_FILE}); the artifact is incomplete")
        if p.stat().st_size != want["size"] or sha256_file(p) != want["sha256"]:
            raise HonedError(f"{p}: contents do not match {ARTIFACT_FILE} (size/sha256): the file was "
                             "replaced or truncated; rebuild the artifact")


def check_writable(final: str | os.PathLike, kind: str, force: bool = False) -> None:
    """Refuse, before any work is done, an output path that writing `kind` there would destroy.

    Allowed: a missing path, an empty folder, or an artifact of the same kind
    whose files are all ones honed listed when it wrote it. `force` allows
    replacing any folder (never a file).
    """
    final = Path(final)
    recover_swap(final)
    if not final.exists() and not final.is_symlink():
        return
    if not final.is_dir():
        raise HonedError(f"{final}: exists and is not a folder; choose another output path")
    entries = sorted(p.name for p in final.iterdir())
    if not entries or force:
        return
    doc = read_artifact(final)
    if doc is None:
        marker = LEGACY_MARKERS.get(kind)
        if marker and (final / marker).is_file():
            return
        raise HonedError(f"{final}: folder is not empty and is not a honed {kind} (holds {', '.join(entries[:3])}"
                         f"{', …' if len(entries) > 3 else ''}); choose another output path or pass --force")
    if doc.get("kind") != kind:
        raise HonedError(f"{final}: holds a honed {doc.get('kind')}, not a {kind}; choose another output path "
                         "or pass --force")
    listed = {rel.split("/", 1)[0] for rel in doc["files"]} | {ARTIFACT_FILE} | ADDED_LATER.get(kind, set())
    extra = [e for e in entries if e not in listed and not _mutable(kind, e)]
    if extra:
        raise HonedError(f"{final}: holds files honed did not write ({', '.join(extra[:3])}"
                         f"{', …' if len(extra) > 3 else ''}); replacing it would delete them: move them "
                         "or pass --force")


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike, kind: str, force: bool = False) -> Iterator[Path]:
    """Yield a temp folder beside `final`; on success record its files and swap it into place.

    A crash (exception or kill) before the swap leaves `final` exactly as it
    was. See the module docstring for what is refused and how the swap is made.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(final)
    check_writable(final, kind, force)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    tmp.mkdir(0o777)    # mkdtemp would make it 0700; this follows the umask
    try:
        yield tmp
        _readable_as_umask_allows(tmp)
        # no timestamp: rebuilding the same artifact gives the same bytes (each kind's manifest dates it)
        record = {"format": ARTIFACT_FORMAT, "kind": kind, "files": _file_table(tmp, kind)}
        (tmp / ARTIFACT_FILE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        _fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        check_writable(final, kind, force)   # the user may have put files there while we worked
    except HonedError as e:   # keep the work (it may have taken an hour) under a name no clean-up touches
        kept = final.with_name(f"{final.name}.new-{secrets.token_hex(3)}")
        os.replace(tmp, kept)
        raise HonedError(f"{e}; the new {kind} is kept at {kept}") from None
    try:
        _swap_into_place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _readable_as_umask_allows(root: Path) -> None:
    """Give every file the read bits the umask allows: some writers (safetensors) make their files 0600,
    which leaves a model unreadable to the service user in a container or to a colleague."""
    want = 0o444 & ~_umask()
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            mode = p.stat().st_mode & 0o7777
            if mode & want != want:
                p.chmod(mode | want)


def _fsync_tree(root: Path) -> None:
    for p in [*root.rglob("*"), root]:
        with contextlib.suppress(OSError):
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2); False where the OS or filesystem cannot."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _swap_into_place(tmp: Path, final: Path) -> None:
    if not final.exists():
        os.replace(tmp, final)
        return
    if _exchange(tmp, final):   # tmp now holds the old artifact
        shutil.rmtree(tmp, ignore_errors=True)
        return
    # Two renames: a kill between them leaves only the backup, which recover_swap restores.
    backup = final.with_name(f".{final.name}.old-{os.getpid()}")
    os.replace(final, backup)
    os.replace(tmp, final)
    shutil.rmtree(backup, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _dead_writer(p: Path, prefix: str) -> bool:
    pid = p.name[len(prefix):].split("-", 1)[0]
    return pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid))


def recover_swap(final: str | os.PathLike) -> str | None:
    """Finish or roll back a two-rename swap that a kill interrupted; return what was done.

    A backup ``.NAME.old-PID`` of a dead writer means the kill came between or
    after the renames: with `final` present the swap completed and the backup is
    deleted; with `final` missing the backup is renamed back (rolled back).
    """
    final = Path(final)
    done = None
    for backup in sorted(final.parent.glob(f".{final.name}.old-*")):
        if not _dead_writer(backup, f".{final.name}.old-"):
            continue
        if final.exists():
            shutil.rmtree(backup, ignore_errors=True)
            done = "finished"
        else:
            os.replace(backup, final)
            done = "rolled back"
    return done


def remove_stale_temps(final: str | os.PathLike) -> list[Path]:
    """Delete temp folders left beside `final` by writers that were killed (their pid is gone)."""
    final = Path(final)
    removed = []
    for p in final.parent.glob(f".{final.name}.tmp-*"):
        if _dead_writer(p, f".{final.name}.tmp-"):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed
