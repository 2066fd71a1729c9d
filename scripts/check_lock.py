#!/usr/bin/env python3
"""Check that the virtual environment holds exactly requirements.lock, and that the lock is complete.

The lock is installed with ``pip install --no-deps``, so pip resolves nothing: this check is what catches a
lock that misses a dependency. Exit 0 when every locked distribution is installed at its locked version and
every requirement of every installed distribution (its markers evaluated, extras not asked for left out) is
met; exit 1 with the list of problems otherwise.

SUBSTITUTES names distributions the lock replaces by another that provides the same module: dice-ml asks for
``xgboost``, whose Linux wheel brings NVIDIA's NCCL (about 470 MB) for GPUs; ``xgboost-cpu`` is the same
package built for CPUs only.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

SUBSTITUTES = {"xgboost": "xgboost-cpu"}


def locked(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            out[canonicalize_name(name)] = version.strip()
    return out


def main(lock: str = "requirements.lock") -> int:
    pins = locked(Path(lock))
    installed = {canonicalize_name(d.metadata["Name"]): d for d in metadata.distributions()}
    problems = []
    for name, version in sorted(pins.items()):
        dist = installed.get(name)
        if dist is None:
            problems.append(f"{name}=={version} is locked but not installed")
        elif Version(dist.version).public != Version(version).public:  # torch's CPU build is 2.13.0+cpu
            problems.append(f"{name}: {dist.version} installed, {version} locked")
    for name in sorted(pins):
        dist = installed.get(name)
        for text in (dist.requires or []) if dist else []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            wanted = canonicalize_name(SUBSTITUTES.get(canonicalize_name(req.name), req.name))
            if wanted not in pins:
                problems.append(f"{name} needs {req}, which the lock does not hold")
            elif installed.get(wanted) and not req.specifier.contains(
                    Version(installed[wanted].version).public, prereleases=True):
                problems.append(f"{name} needs {req}; the lock has {wanted}=={pins[wanted]}")
    for problem in problems:
        print(f"requirements.lock: {problem}", file=sys.stderr)
    if problems:
        print("Fix: add or update the line in requirements.lock (`make lock` writes the venv's set), then "
              "`make setup`.", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
