#!/usr/bin/env python3
"""Compare two evidence.json files field by field: which values both have and whether they are equal.

    python scripts/compare_evidence.py OLD.json NEW.json [--tolerance 0] [--show 20]

Every leaf value (number, string, boolean, null) is addressed by its path. Records in lists are
addressed by what they are, not where they stand, so an explanation added to a policy does not shift
the others: subjects by model and dataset (``subjects[gbm@applications]``), methods and explanations
by name, decisions by id, findings by id and model (``findings[rules.fidelity@gbm]``). The script
prints how many paths both files have, how many of those are equal (numbers within --tolerance,
default 0: exactly), the paths that differ, and how many paths only one file has (fields added or
removed by a change of the evidence format or of the policy). Exit 0 when every common path is equal,
1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from auditor.paths import path  # noqa: E402


def _record_key(item) -> str | None:
    """What a list item is: a subject by model@dataset, a finding by id@model, others by name or id."""
    if not isinstance(item, dict):
        return None
    if isinstance(item.get("model"), dict) and isinstance(item.get("dataset"), dict):
        return f"{item['model'].get('id')}@{item['dataset'].get('id')}"
    if "metric" in item and "id" in item:
        return f"{item['id']}@{item.get('model')}"
    for field in ("name", "id"):
        if isinstance(item.get(field), (str, int)) and not isinstance(item.get(field), bool):
            return str(item[field])
    if "type" in item:  # a policy's explanation without an id: named by its type
        return str(item["type"])
    return None


def leaves(node, at: str = ""):
    """(path, value) for every leaf under ``node``; dict keys and list items (by record key) extend the path."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, path(at, str(key)))
    elif isinstance(node, list):
        keys = [_record_key(item) for item in node]
        by_record = None not in keys and len(set(keys)) == len(keys)
        for i, value in enumerate(node):
            yield from leaves(value, f"{at}[{keys[i]}]" if by_record else path(at, i))
    else:
        yield at or "(top level)", node


def equal(a, b, tolerance: float) -> bool:
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        return a == b if tolerance == 0 else abs(a - b) <= tolerance
    return a == b


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--tolerance", type=float, default=0.0, help="Largest |difference| of numbers counted equal.")
    parser.add_argument("--show", type=int, default=20, help="Differing or one-sided paths to list.")
    args = parser.parse_args()
    old = dict(leaves(json.loads(args.old.read_text(encoding="utf-8"))))
    new = dict(leaves(json.loads(args.new.read_text(encoding="utf-8"))))
    common = [p for p in old if p in new]
    differing = [p for p in common if not equal(old[p], new[p], args.tolerance)]
    only_old = [p for p in old if p not in new]
    only_new = [p for p in new if p not in old]
    numeric = sum(1 for p in common if isinstance(old[p], (int, float)) and not isinstance(old[p], bool))
    print(f"{args.old} -> {args.new}")
    print(f"  fields in both: {len(common)} ({numeric} numbers); equal: {len(common) - len(differing)}; "
          f"differing: {len(differing)}")
    for p in differing[: args.show]:
        print(f"    differs: {p}: {old[p]!r} -> {new[p]!r}")
    if len(differing) > args.show:
        print(f"    ... and {len(differing) - args.show} more")
    print(f"  only in the old evidence: {len(only_old)}; only in the new: {len(only_new)}")
    for label, paths in (("only old", only_old), ("only new", only_new)):
        for p in paths[: args.show]:
            print(f"    {label}: {p}")
        if len(paths) > args.show:
            print(f"    ... and {len(paths) - args.show} more")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
