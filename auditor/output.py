"""Write an audit's output folder atomically: all of it, or nothing.

Files are written into a hidden temporary folder beside the destination, flushed to disk, and the
folder is renamed into place only when complete. An interrupted run leaves at most a
``.<name>.partial-*`` folder, never a half-written report under the destination's name.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from .errors import OutputError

__all__ = ["check_destination", "write_atomically"]

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


def write_atomically(out: Path, files: dict[str, bytes], *, force: bool) -> Path:
    """Write ``files`` (relative name -> bytes) as the folder ``out``; replace it only with ``force``."""
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
        tmp.mkdir()
        for name, data in files.items():
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            _write(target, data)
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
    return out
