"""Write an audit's output folder atomically: all of it, or nothing.

Files are written into a hidden temporary folder beside the destination, flushed to disk, and the
folder is renamed into place only when complete. An interrupted run leaves at most a
``.<name>.partial-*`` folder, never a half-written report under the destination's name.
:func:`staged` opens such a folder for files written one by one (a large one streamed in chunks);
:func:`write_atomically` writes a dict of files through it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import OutputError

__all__ = ["PartialFolder", "check_destination", "staged", "write_atomically"]

_NAME_MAX = 255  # bytes in one file name on Linux and macOS file systems


def check_destination(out: Path, *, force: bool) -> None:
    """Refuse early (before any work) a destination that is a file, or a non-empty folder without --force."""
    longest = _NAME_MAX - len(".partial-12345678.")  # the temporary folder's name is .<name>.partial-<tag>
    if len(os.fsencode(out.name)) > longest:
        raise OutputError(f"{out.name[:40]}...: the output folder's name is {len(os.fsencode(out.name))} bytes long; "
                          f"at most {longest} can be written atomically", hint="choose a shorter --out folder name")
    try:
        exists, is_dir = out.exists(), out.is_dir()
        not_empty = is_dir and any(out.iterdir())
    except OSError as exc:  # e.g. a folder it may not read
        raise OutputError(f"{out}: cannot use as the output folder ({exc.strerror or exc})",
                          hint="choose another --out path") from None
    if exists and not is_dir:
        raise OutputError(f"{out}: exists and is not a folder", hint="choose another --out path")
    if not_empty and not force:
        raise OutputError(f"{out}: folder exists and is not empty",
                          hint="choose another --out folder, or pass --force to replace it")


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


class PartialFolder:
    """The hidden folder an output is written into before it is renamed into place (see :func:`staged`).

    ``write`` puts one file's bytes; ``stream`` writes a file from an iterable of byte chunks, hashing as it
    goes, so a large file (the evidence) never has to be held whole in memory. ``sha256`` maps every file
    written so far to its SHA-256 (hex)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sha256: dict[str, str] = {}

    def _target(self, name: str) -> Path:
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def write(self, name: str, data: bytes) -> None:
        _write(self._target(name), data)
        self.sha256[name] = hashlib.sha256(data).hexdigest()

    def stream(self, name: str, chunks: Iterable[bytes]) -> str:
        """Write ``name`` from ``chunks``; return its SHA-256 (hex)."""
        digest = hashlib.sha256()
        with open(self._target(name), "wb") as fh:
            for chunk in chunks:
                digest.update(chunk)
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        self.sha256[name] = digest.hexdigest()
        return self.sha256[name]

    def read(self, name: str) -> bytes:
        return (self.path / name).read_bytes()


@contextlib.contextmanager
def staged(out: Path, *, force: bool) -> Iterator[PartialFolder]:
    """A :class:`PartialFolder` beside ``out``, renamed to ``out`` when the block ends without an error
    (replacing ``out`` only with ``force``); removed, with ``out`` untouched, when it raises."""
    out = Path(out)
    check_destination(out, force=force)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out.parent}: cannot create folder ({exc.strerror})") from None
    tag = uuid.uuid4().hex[:8]
    tmp = out.parent / f".{out.name}.partial-{tag}"
    old = out.parent / f".{out.name}.old-{tag}"
    try:
        try:
            tmp.mkdir()
            yield PartialFolder(tmp)
            if out.exists():
                out.rename(old)  # empty, or force: keep it until the new folder is in place
            tmp.rename(out)
        except OSError as exc:
            if old.exists() and not out.exists():
                old.rename(out)
            raise OutputError(f"{out}: cannot write output ({exc.strerror or exc})",
                              hint="check free space and permissions") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def write_atomically(out: Path, files: dict[str, bytes], *, force: bool) -> Path:
    """Write ``files`` (relative name -> bytes) as the folder ``out``; replace it only with ``force``."""
    with staged(out, force=force) as folder:
        for name, data in files.items():
            folder.write(name, data)
    return Path(out)
