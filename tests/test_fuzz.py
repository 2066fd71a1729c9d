"""Fuzzed inputs: generated policies and data files load, or fail with the project's own error.

Hypothesis starts from valid policies (the sample policies in ``policies/`` and a tiny policy over the test
suite's dataset) and breaks them: fields deleted, values of the wrong type, unknown fields, odd Unicode (RTL
marks, NUL, lone surrogates, emoji, HTML), very long strings, deep nesting, copied and duplicated entries,
and, on the YAML text, truncation at a random byte, duplicate keys, anchors and aliases, tags and stray
bytes. Data files get NaN, inf, empty cells, mixed types, renamed, dropped and duplicated columns, duplicate
ids, unseen categories, long values, non-UTF-8 bytes, a header only or one row.

The property, in process: ``load_policy`` (and, for data, ``prepare``) returns, or raises an
:class:`~auditor.errors.AuditorError` with a message; never any other exception. Through the command line:
``auditor run`` exits 0, 1 or 2, prints no traceback, and on exit 2 leaves nothing in ``--out``.

Counts (deterministic: ``derandomize``): 2,000 policies and 300 data files in process, 24 CLI runs.
``AUDITOR_FUZZ_POLICIES=10000 pytest tests/test_fuzz.py -k policy`` runs 10,000 policies.
"""

from __future__ import annotations

import copy
import csv
import functools
import io
import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from auditor.audit import prepare
from auditor.errors import AuditorError, PolicyError
from auditor.policy import canonical_json, load_policy
from auditor.yaml_lines import policy_lines

from conftest import REPO, Artifacts, base_policy

POLICIES = int(os.environ.get("AUDITOR_FUZZ_POLICIES", "2000"))
DATA_FILES = int(os.environ.get("AUDITOR_FUZZ_DATA", "300"))
CLI_RUNS = int(os.environ.get("AUDITOR_FUZZ_CLI", "24"))
AUDITOR = Path(sys.executable).parent / "auditor"


def fuzz_settings(n: int, **kw) -> settings:
    return settings(max_examples=n, deadline=None, derandomize=True, database=None, print_blob=False,
                    suppress_health_check=list(HealthCheck), **kw)


def project_error_or_none(call):
    """``call()``'s result, or None when it raised the project's own error; any other exception propagates."""
    try:
        return call()
    except AuditorError as exc:
        assert exc.message.strip(), f"{type(exc).__name__} with an empty message"
        assert str(exc).strip()
        if isinstance(exc, PolicyError):
            assert exc.problems, "a PolicyError without problems"
            for p in exc.problems:
                assert p.field and p.message.strip(), f"a problem without field or message: {p!r}"
        return None


# --- bases: valid policies, by name ------------------------------------------------------------------------
#
# Every policy is written to <root>/policies/, where ../sample_audits is a link to the repository's
# sample_audits/ and ../tiny a link to the session's tiny dataset and models, so the sample policies'
# relative paths hold as they are, and the tiny policy's can be written once, here.

SAMPLE_TEXTS = {p.stem: p.read_text(encoding="utf-8") for p in sorted((REPO / "policies").glob("*.yaml"))}
_TINY = Path("/tiny")
TINY_TREE = base_policy(Artifacts(_TINY, _TINY / "data.csv", _TINY / "background.csv", _TINY / "logreg.skops",
                                  _TINY / "mlp.pt", _TINY / "logreg.pkl"), Path("/policies"))
BASE_TEXTS = SAMPLE_TEXTS | {"tiny": yaml.safe_dump(TINY_TREE, sort_keys=False)}
BASES = sorted(BASE_TEXTS)


@functools.cache
def _base_json(name: str) -> str:
    return json.dumps(yaml.load(BASE_TEXTS[name], Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))


def base_tree(name: str):
    """The base policy as plain, unshared JSON-like data (anchored lists become copies)."""
    return json.loads(_base_json(name))


def dump(tree, **options) -> bytes:
    """YAML for ``tree``: libyaml's emitter, or PyYAML's where a string holds a lone surrogate (escaped)."""
    options.setdefault("sort_keys", False)
    try:
        return yaml.dump(tree, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), encoding="utf-8", **options)
    except UnicodeEncodeError:
        return yaml.safe_dump(tree, **options).encode("utf-8", "surrogatepass")


@pytest.fixture(scope="session")
def fuzz_root(tmp_path_factory, artifacts) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "sample_audits").symlink_to(REPO / "sample_audits", target_is_directory=True)
    (root / "tiny").symlink_to(artifacts.folder, target_is_directory=True)
    (root / "policies").mkdir()
    return root


# --- values that break things ------------------------------------------------------------------------------

ODD = [
    "", " ", "\u200f\u202eevil\u202c", "\u061c", "\x00", "a\x00b", "\ud800", "\udfff", "x\udc80y", "😀",
    "👩‍👩‍👧", "<script>alert(1)</script>", "{{ 7 * 7 }}", "{% raw %}", "${HOME}", "../../../../etc/passwd", "C:\\Windows",
    "~", "null", "true", "no", "1e400", ".nan", "-0", "0x1F", "\ufeff", "\r\n", "a\nb", "\t", "'", '"', "\\",
    "&a", "*a", "!!python/object/apply:os.system", "%", "@", "`", "\u0085", "\u2028", "\x7f", "\x1b[31m",
    "ﬁ", "İ", "ǅ", "\u0301", "Z̴̡͝a̸l̶g̷o", "日本語",
    "lime", "permutation_importance", "logreg", "data", "f0",
]
CHAOS_CHARS = st.characters(codec=None, categories=["Cs", "Cc", "Cf", "Zl", "Zp", "So", "Mn", "Lo"])
ODD_STRINGS = st.one_of(
    st.sampled_from(ODD),
    st.text(max_size=30),
    st.text(CHAOS_CHARS, max_size=12),
    st.builds(lambda s, n: s * n, st.sampled_from(["x", "é", "😀", "\u202e", "a/", "<b>"]),
              st.sampled_from([256, 1000, 5000, 20_000])),
)
NUMBERS = st.sampled_from([0, -1, 1, 2, 7, 63, 64, 65, 255, 2**31, 2**32 - 1, 2**32, 2**63, -2**63, 10**30,
                           0.0, -0.0, 0.5, 1.5, -1e-300, 1e308, math.inf, -math.inf, math.nan, True, False])
JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(), NUMBERS, st.floats(), ODD_STRINGS,
    st.lists(st.one_of(st.integers(), ODD_STRINGS, st.none()), max_size=3),
    st.dictionaries(st.one_of(ODD_STRINGS, st.integers()), st.one_of(st.integers(), st.none(), ODD_STRINGS),
                    max_size=3),
    st.sampled_from([[], {}, [[]], [{}], {"type": "lime"}, {"type": "nope"}, {"a": {"b": {"c": 1}}}, [None]]),
)
KEYS = st.one_of(ODD_STRINGS, st.integers(), st.none(), st.booleans(),
                 st.sampled_from(["id", "type", "path", "models", "features", "extra", "Version", "version "]))

# One tree mutation: a tuple of an operation and its arguments; ``sel`` picks a node (modulo how many fit).
SEL = st.integers(0, 10_000)
TREE_OPS = st.one_of(
    st.tuples(st.just("delete"), SEL),
    st.tuples(st.just("replace"), SEL, JUNK),
    st.tuples(st.just("add"), SEL, KEYS, JUNK),
    st.tuples(st.just("odd"), SEL, ODD_STRINGS, st.sampled_from(["replace", "prefix", "suffix", "middle"])),
    st.tuples(st.just("number"), SEL, NUMBERS),
    st.tuples(st.just("nest"), SEL, st.integers(1, 120), st.sampled_from(["list", "dict"])),
    st.tuples(st.just("copy"), SEL, SEL),
    st.tuples(st.just("dup"), SEL, SEL),
)


def _nodes(tree) -> list[tuple[tuple, object]]:
    out = []

    def walk(node, path):
        out.append((path, node))
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, path + (k,))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, path + (i,))

    walk(tree, ())
    return out


def _get(tree, path: tuple):
    for part in path:
        tree = tree[part]
    return tree


def _pick(tree, sel: int, keep) -> tuple | None:
    paths = [p for p, v in _nodes(tree) if keep(p, v)]
    return paths[sel % len(paths)] if paths else None


def _set(tree, path: tuple, value):
    if not path:
        return value
    _get(tree, path[:-1])[path[-1]] = value
    return tree


def mutate_tree(tree, op: tuple):
    """``tree`` with one mutation applied (the root itself may be replaced)."""
    kind, sel, *args = op
    if isinstance(sel, tuple):  # an explicit path, for regression examples
        path = sel
    else:
        keep = {
            "delete": lambda p, v: bool(p), "replace": lambda p, v: True, "copy": lambda p, v: True,
            "add": lambda p, v: isinstance(v, dict),
            "odd": lambda p, v: isinstance(v, str),
            "number": lambda p, v: isinstance(v, (int, float)) and not isinstance(v, bool),
            "nest": lambda p, v: bool(p),
            "dup": lambda p, v: isinstance(v, list) and bool(v),
        }[kind]
        path = _pick(tree, sel, keep)
        if path is None:
            return tree
    if kind == "delete":
        del _get(tree, path[:-1])[path[-1]]
    elif kind in ("replace", "number"):
        tree = _set(tree, path, copy.deepcopy(args[0]))
    elif kind == "add":
        _get(tree, path)[args[0]] = copy.deepcopy(args[1])
    elif kind == "odd":
        s, mode = args
        old = _get(tree, path)
        new = {"replace": s, "prefix": s + old, "suffix": old + s,
               "middle": old[: len(old) // 2] + s + old[len(old) // 2:]}[mode]
        tree = _set(tree, path, new)
    elif kind == "nest":
        depth, how = args
        value = _get(tree, path)
        for _ in range(depth):
            value = [value] if how == "list" else {"k": value}
        tree = _set(tree, path, value)
    elif kind == "copy":
        target = _pick(tree, args[0], lambda p, v: bool(p))
        if target is not None:
            tree = _set(tree, target, copy.deepcopy(_get(tree, path)))
    elif kind == "dup":
        items = _get(tree, path)
        items.insert(args[0] % (len(items) + 1), copy.deepcopy(items[args[0] % len(items)]))
    return tree


DUMPS = st.fixed_dictionaries({
    "sort_keys": st.booleans(),
    "default_flow_style": st.sampled_from([False, None, True]),
    "allow_unicode": st.booleans(),
    "width": st.sampled_from([80, 20, 10**6]),
})


# --- text mutations ----------------------------------------------------------------------------------------

def _laughs(levels: int) -> str:
    lines = ["lol0: &lol0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * 9) + "]")
    return "\n".join(lines)


SNIPPETS = [
    "loop: &loop [*loop]", "loop: &loop {k: *loop}", "audit: &loop {id: x, owner: *loop}",
    "k: *undefined", "<<: *undefined", "<<: [1, 2]", "<<: {version: 2}", "k: &dup 1\nj: &dup 2",
    _laughs(4), _laughs(9), "models: &m [{id: a, path: x, format: skops}]\nexplanations: *m",
    "k: !!python/object/apply:os.system ['true']", "k: !!python/name:os.system", "k: !!binary aGVsbG8=",
    "k: !!set {a, b}", "k: !!timestamp 2001-12-14", "k: !!omap [a: 1]", "k: !!float abc", "k: !!int 0x",
    "k: !!timestamp 2001-99-99",
    "k: !custom x", "? [a, b]\n: c", "? {a: 1}\n: c", "%YAML 1.1\n---", "%TAG ! tag:x,2000:\n---", "---", "...",
    "k: |\n  block\n   text", "k: >-\n  folded", "'unterminated", "\"bad \\q escape\"", "k: [1, 2", "k: {a: 1",
    "- item", "k: @x", "k: `x`", "k: \"\\ud800\"", "k: \"\\x00\"", "k: \"\\U0001F600\"", "k: \"\\u202e\"",
    "\tk: tab", "k:\tv", "k: v # comment", "#only a comment", "", "\ufeffk: v", "k: \u2028v", "k:\x85v",
    "k: " + "[" * 200 + "]" * 200, "k: " + "[" * 5000 + "]" * 5000, "k: " + "{a: " * 2000 + "1" + "}" * 2000,
    "k: [" * 3 + "\n", "version: 1", "version: 2", "version: '1'", "version: 1.0", "version: true",
    "models: []", "models: null", "audit: x", "datasets: {}", "explanations: [{type: lime}]", "report: {formats: []}",
]
BYTES = st.one_of(
    st.sampled_from([b"\xff", b"\xfe\xff", b"\xc3", b"\xe2\x80", b"\x00", b"\xef\xbb\xbf", b"\x80abc", b"\r",
                     b"\t", b"\x1b", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]),
    st.binary(max_size=8),
)
FRACTION = st.floats(0, 1)
TEXT_OPS = st.one_of(
    st.tuples(st.just("truncate"), FRACTION),
    st.tuples(st.just("bytes"), FRACTION, BYTES),
    st.tuples(st.just("dup_line"), FRACTION, FRACTION),
    st.tuples(st.just("drop_line"), FRACTION),
    st.tuples(st.just("snippet"), FRACTION, st.sampled_from(SNIPPETS), st.booleans()),
    st.tuples(st.just("indent"), FRACTION, st.sampled_from([" ", "  ", "\t", "- "])),
)


def mutate_text(raw: bytes, op: tuple) -> bytes:
    kind, where, *args = op
    if kind == "truncate":
        return raw[: int(where * len(raw))]
    if kind == "bytes":
        at = int(where * len(raw))
        return raw[:at] + args[0] + raw[at:]
    lines = raw.split(b"\n")
    at = min(int(where * len(lines)), len(lines) - 1)
    if kind == "dup_line":
        to = min(int(args[0] * len(lines)), len(lines))
        lines.insert(to, lines[at])
    elif kind == "drop_line":
        del lines[at]
    elif kind == "snippet":
        snippet, top_level = args
        indent = b"" if top_level else lines[at][: len(lines[at]) - len(lines[at].lstrip(b" "))]
        block = [indent + line for line in snippet.encode("utf-8", "surrogatepass").split(b"\n")]
        if top_level:
            lines += block
        else:
            lines[at:at] = block
    elif kind == "indent":
        lines[at] = args[0].encode() + lines[at]
    return b"\n".join(lines)


def policy_bytes(base: str, tree_ops: list, options: dict | None, text_ops: list) -> bytes:
    """The base policy, mutated as a tree, dumped (or kept as its original text), then mutated as bytes."""
    if options is None and not tree_ops:
        raw = BASE_TEXTS[base].encode("utf-8")
    else:
        tree = base_tree(base)
        for op in tree_ops:
            tree = mutate_tree(tree, op)
        raw = dump(tree, **(options or {}))
    for op in text_ops:
        raw = mutate_text(raw, op)
    return raw


def check_policy(path: Path) -> None:
    policy = project_error_or_none(lambda: load_policy(path))
    if policy is not None:  # what prepare and the evidence read of it
        policy_lines(path)
        canonical_json(policy)


# --- policies, in process ----------------------------------------------------------------------------------


@fuzz_settings(POLICIES * 3 // 5)
@given(base=st.sampled_from(BASES), tree_ops=st.lists(TREE_OPS, min_size=1, max_size=4), style=DUMPS)
@example(base="tiny", tree_ops=[("replace", ("models", 0, "path"), "a" * 5000)], style={})
@example(base="lesion_imaging_medical", tree_ops=[("replace", ("models", 0, "architecture", "file"), "b/" * 3000)],
         style={})
@example(base="tiny", tree_ops=[("nest", ("sample",), 120, "list")], style={})
@example(base="tiny", tree_ops=[("odd", ("audit", "title"), "\udfff", "prefix")], style={"allow_unicode": True})
@example(base="tiny", tree_ops=[("replace", ("models", 0, "format"), ["skops"])], style={})
def test_fuzzed_policy_trees_load_or_fail_cleanly(fuzz_root, base, tree_ops, style):
    path = fuzz_root / "policies" / "tree.yaml"
    path.write_bytes(policy_bytes(base, tree_ops, style, []))
    check_policy(path)


@fuzz_settings(POLICIES - POLICIES * 3 // 5)
@given(base=st.sampled_from(BASES), tree_ops=st.lists(TREE_OPS, max_size=1),
       style=st.one_of(st.none(), DUMPS), text_ops=st.lists(TEXT_OPS, min_size=1, max_size=3))
@example(base="tiny", tree_ops=[], style=None, text_ops=[("snippet", 0.0, "loop: &loop [*loop]", True)])
@example(base="tiny", tree_ops=[], style=None, text_ops=[("snippet", 0.0, "audit: &loop {id: x, owner: *loop}", True)])
@example(base="tiny", tree_ops=[], style=None, text_ops=[("snippet", 0.0, _laughs(9), True)])
@example(base="tiny", tree_ops=[], style=None, text_ops=[("snippet", 0.0, "k: " + "[" * 5000 + "]" * 5000, True)])
@example(base="tiny", tree_ops=[], style=None,
         text_ops=[("snippet", 0.0, "k: " + "{a: " * 2000 + "1" + "}" * 2000, True)])
@example(base="tiny", tree_ops=[], style=None, text_ops=[("bytes", 0.5, b"\x00")])
@example(base="credit_finance", tree_ops=[], style=None, text_ops=[("truncate", 0.37)])
@example(base="tiny", tree_ops=[], style=None, text_ops=[("snippet", 0.0, "k: !!float abc", True)])
@example(base="tiny", tree_ops=[], style=None, text_ops=[("snippet", 0.0, "k: !!timestamp 2001-99-99", True)])
@example(base="tiny", tree_ops=[], style=None, text_ops=[("bytes", 0.0, b"\xff")])
def test_fuzzed_policy_texts_load_or_fail_cleanly(fuzz_root, base, tree_ops, style, text_ops):
    path = fuzz_root / "policies" / "text.yaml"
    path.write_bytes(policy_bytes(base, tree_ops, style, text_ops))
    check_policy(path)


def test_line_numbers_of_an_unreadable_policy_are_none(fuzz_root):
    path = fuzz_root / "policies" / "latin1.yaml"
    path.write_bytes("version: 1\naudit: {title: Caf\u00e9}\n".encode("latin-1"))
    assert policy_lines(path) == {}


def test_a_signing_identity_name_too_long_for_the_file_system_is_a_user_error(fuzz_root):
    from auditor.signing import load_identity

    with pytest.raises(AuditorError):
        load_identity(fuzz_root / ("x" * 300))


def test_alias_chains_deeper_than_the_limit_are_refused(fuzz_root):
    """Aliases of aliases nest without nesting in the text; the policy is refused, not recursed into."""
    lines = ["version: 1", "a0: &a0 [x]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 3000)]
    path = fuzz_root / "policies" / "chain.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="levels deep"):
        load_policy(path)


# --- data files, in process --------------------------------------------------------------------------------

CELLS = st.one_of(
    st.sampled_from(["", " ", "nan", "NaN", "NA", "N/A", "null", "None", "inf", "-inf", "Infinity", "1e400",
                     "-1e400", "1e-400", "0x1F", "1,5", " 3 ", "True", "false", "yes", "no", "good", "bad", "maybe",
                     "castle", "own", "0", "-0", "1" * 400, '"', "'", "a,b", "a\nb", "\x00", "\u202e", "😀", "\ud800",
                     "<script>x</script>", "=cmd|' /C calc'!A0", "x" * 5000]),
    st.floats().map(repr), st.integers().map(str), st.text(max_size=8), st.text(CHAOS_CHARS, max_size=4),
)
COL = st.integers(0, 50)
ROW = st.integers(0, 500)
CELL_OP = st.tuples(st.just("cell"), ROW, COL, CELLS)
DATA_OPS = st.one_of(  # most of them one cell, the rest whole rows or columns
    CELL_OP, CELL_OP, CELL_OP, CELL_OP,
    st.tuples(st.just("column"), COL, CELLS),
    st.tuples(st.just("rename"), COL, st.one_of(COL, CELLS)),
    st.tuples(st.just("drop_col"), COL),
    st.tuples(st.just("dup_col"), COL),
    st.tuples(st.just("dup_row"), ROW),
    st.tuples(st.just("one_class"), ROW),
    st.tuples(st.just("ragged"), ROW, st.booleans()),
)
DATA_BYTE_OPS = st.one_of(
    st.tuples(st.just("truncate"), FRACTION), st.tuples(st.just("bytes"), FRACTION, BYTES),
    st.tuples(st.just("bom"), FRACTION), st.tuples(st.just("crlf"), FRACTION),
    st.tuples(st.just("latin1"), FRACTION), st.tuples(st.just("semicolons"), FRACTION),
)


def mutate_grid(grid: list[list[str]], op: tuple, target: str) -> None:
    """Apply one mutation to a CSV as rows of cells (``grid[0]`` the header); ``target`` names the label column."""
    kind, *args = op
    header, body = grid[0], grid[1:]
    ncol = max(len(header), 1)
    if kind == "cell" and body:
        row = body[args[0] % len(body)]
        if row:
            row[args[1] % len(row)] = args[2]
    elif kind == "column":
        for row in body:
            if row:
                row[args[0] % len(row)] = args[1]
    elif kind == "rename" and header:
        new = args[1]
        header[args[0] % ncol] = header[new % ncol] if isinstance(new, int) else new
    elif kind in ("drop_col", "dup_col") and header:
        c = args[0] % ncol
        for row in grid:
            if c < len(row):
                row.insert(c, row[c]) if kind == "dup_col" else row.pop(c)
    elif kind == "dup_row" and body:
        grid.insert(1 + args[0] % len(body), list(body[args[0] % len(body)]))
    elif kind == "one_class" and body and target in header:
        c = header.index(target)
        for row in body:
            if c < len(row):
                row[c] = body[args[0] % len(body)][c] if c < len(body[args[0] % len(body)]) else ""
    elif kind == "ragged" and body:
        row = body[args[0] % len(body)]
        row.append("extra") if args[1] else (row.pop() if row else None)


def csv_bytes(frame_csv: str, rows: int, ops: list, byte_ops: list, target: str) -> bytes:
    grid = [list(r) for r in csv.reader(io.StringIO(frame_csv))]
    grid = grid[: rows + 1]
    for op in ops:
        mutate_grid(grid, op, target)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(grid)
    text = buffer.getvalue()
    raw = text.encode("utf-8", "surrogatepass")
    for kind, where, *args in byte_ops:
        at = int(where * len(raw))
        if kind == "truncate":
            raw = raw[:at]
        elif kind == "bytes":
            raw = raw[:at] + args[0] + raw[at:]
        elif kind == "bom":
            raw = b"\xef\xbb\xbf" + raw
        elif kind == "crlf":
            raw = raw.replace(b"\n", b"\r\n")
        elif kind == "latin1":
            raw = raw.decode("utf-8", "replace").encode("cp1252", "replace")
        elif kind == "semicolons":
            raw = raw.replace(b",", b";")
    return raw


class _Quiet(dict):
    def __repr__(self) -> str:  # hypothesis prints the fixture with each failing case
        return f"<{', '.join(self)}>"


@pytest.fixture(scope="session")
def data_bases(fuzz_root, artifacts, loans):
    """Per base: (policy path, {dataset id: (file to write, its original CSV text)}, target column)."""
    import pandas as pd

    folder = fuzz_root / "data"
    folder.mkdir()
    bases = _Quiet()
    tiny = base_tree("tiny")
    tiny["models"], tiny["audited"] = tiny["models"][:1], tiny["audited"][:1]
    tiny["explanations"] = [{"type": "permutation_importance", "n_repeats": 2}]
    loan = loans.policy(folder)
    loan["models"], loan["audited"] = loan["models"][:1], loan["audited"][:1]
    loan["explanations"] = [{"type": "rules", "max_depth": 2}]
    del loan["principal_reasons"]
    for name, tree, sources in (("tiny", tiny, {"data": artifacts.data, "background": artifacts.background}),
                                ("loans", loan, {"loans": loans.data, "history": loans.background})):
        files = {}
        for spec in tree["datasets"]:
            target = folder / f"{name}-{spec['id']}.csv"
            spec["path"] = str(target)
            files[spec["id"]] = (target, pd.read_csv(sources[spec["id"]]).to_csv(index=False))
            target.write_text(files[spec["id"]][1], encoding="utf-8")
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
        bases[name] = (path, files, tree["datasets"][0]["target"])
    return bases


@fuzz_settings(DATA_FILES)
@given(base=st.sampled_from(["tiny", "loans"]), which=st.sampled_from(["audited", "background", "both"]),
       rows=st.one_of(st.sampled_from([0, 1, 2, 40, 400]), st.integers(3, 120), st.integers(3, 120)),
       ops=st.lists(DATA_OPS, max_size=5),
       byte_ops=st.one_of(st.just([]), st.just([]), st.lists(DATA_BYTE_OPS, max_size=2)))
@example(base="tiny", which="audited", rows=40, ops=[("cell", 3, 2, "nan")], byte_ops=[])
@example(base="loans", which="audited", rows=40, ops=[("cell", 3, 2, "")], byte_ops=[])
@example(base="loans", which="audited", rows=40, ops=[("cell", 3, 2, "castle")], byte_ops=[])
@example(base="tiny", which="both", rows=0, ops=[], byte_ops=[])
def test_fuzzed_data_files_load_or_fail_cleanly(data_bases, base, which, rows, ops, byte_ops):
    path, files, target = data_bases[base]
    ids = list(files)
    chosen = {"audited": ids[:1], "background": ids[1:], "both": ids}[which]
    for dataset_id, (file, original) in files.items():
        if dataset_id in chosen:
            file.write_bytes(csv_bytes(original, rows, ops, byte_ops, target))
        else:
            file.write_text(original, encoding="utf-8")
    policy = load_policy(path)  # the policy is valid; only the data changed
    project_error_or_none(lambda: prepare(policy))


# --- end to end through the command line -------------------------------------------------------------------

CLI_TREE_OPS = st.one_of(
    st.tuples(st.just("delete"), SEL), st.tuples(st.just("replace"), SEL, JUNK),
    st.tuples(st.just("add"), SEL, KEYS, JUNK), st.tuples(st.just("odd"), SEL, ODD_STRINGS, st.just("suffix")),
    st.tuples(st.just("number"), SEL, st.sampled_from([0, 1, 2, -1, 2**32, 0.5, math.nan])),
    st.tuples(st.just("copy"), SEL, SEL), st.tuples(st.just("dup"), SEL, SEL),
)
_CLI_COMMON = {
    "explanation": st.sampled_from([{"type": "permutation_importance", "n_repeats": 1},
                                    {"type": "rules", "max_depth": 2, "min_samples_leaf": 5}]),
    "out": st.sampled_from(["absent", "absent", "absent", "nested", "empty", "not_empty", "file", "long_name"]),
    "force": st.booleans(),
    "sample": st.sampled_from([None, None, 1, 3]),
    "seed": st.sampled_from([None, 0, 2**32 - 1]),
    "identity": st.booleans(),
    "json": st.booleans(),
    "history": st.booleans(),
}
_NONE = st.just([])
_VALID_CLI_CASE = st.fixed_dictionaries(_CLI_COMMON | {"tree_ops": _NONE, "text_ops": _NONE, "data_ops": _NONE,
                                                       "data_bytes": _NONE})
CLI_CASES = st.one_of(  # a broken policy, broken data, or valid inputs (with every output state)
    st.fixed_dictionaries(_CLI_COMMON | {"tree_ops": st.lists(CLI_TREE_OPS, min_size=1, max_size=2),
                                         "text_ops": st.lists(TEXT_OPS, max_size=1), "data_ops": _NONE,
                                         "data_bytes": _NONE}),
    st.fixed_dictionaries(_CLI_COMMON | {"tree_ops": _NONE, "text_ops": _NONE,
                                         "data_ops": st.lists(DATA_OPS, min_size=1, max_size=3),
                                         "data_bytes": st.one_of(_NONE, _NONE, st.lists(DATA_BYTE_OPS, max_size=1))}),
    _VALID_CLI_CASE,
)


@pytest.fixture(scope="session")
def cli_assets(tmp_path_factory, artifacts):
    """A signing identity and the tiny data the CLI cases start from."""
    from auditor.signing import init_identity

    folder = tmp_path_factory.mktemp("fuzz_cli")
    init_identity(folder / "identity", "fuzz tests (development)")
    return folder


def _start(case: dict, folder: Path, artifacts, identity: Path):
    """Write one case's inputs under ``folder`` and start ``auditor run`` on them."""
    folder.mkdir(parents=True)
    data = folder / "data.csv"
    data.write_bytes(csv_bytes(artifacts.data.read_text(encoding="utf-8"), 60, case["data_ops"], case["data_bytes"],
                               "label"))
    tree = base_tree("tiny")
    tree["models"], tree["audited"] = tree["models"][:1], tree["audited"][:1]
    tree["models"][0]["path"] = str(artifacts.logreg)
    tree["datasets"][0]["path"], tree["datasets"][1]["path"] = str(data), str(artifacts.background)
    tree["sample"]["size"] = 2
    tree["explanations"] = [case["explanation"]]
    for op in case["tree_ops"]:
        tree = mutate_tree(tree, op)
    raw = dump(tree)
    for op in case["text_ops"]:
        raw = mutate_text(raw, op)
    (folder / "policy.yaml").write_bytes(raw)
    out = folder / {"nested": "a/b/out", "long_name": "o" * 300}.get(case["out"], "out")
    if case["out"] in ("empty", "not_empty"):
        out.mkdir()
    if case["out"] == "not_empty":
        (out / "keep.txt").write_text("earlier run", encoding="utf-8")
    if case["out"] == "file":
        out.write_text("a file", encoding="utf-8")
    args = [str(AUDITOR), "run", "policy.yaml", "--out", str(out), "-q"]
    args += ["--history", str(folder / "history.sqlite")] * case["history"]  # else: beside --out
    args += ["--force"] * case["force"] + ["--json"] * case["json"]
    args += ["--sample", str(case["sample"])] * (case["sample"] is not None)
    args += ["--seed", str(case["seed"])] * (case["seed"] is not None)
    args += ["--identity", str(identity)] * case["identity"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}
    before = _listing(out)
    proc = subprocess.Popen(args, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc, out, before


def _listing(out: Path):
    try:
        if out.is_file():
            return "file"
        return sorted(str(p.relative_to(out)) for p in out.rglob("*")) if out.is_dir() else None
    except OSError:  # a name too long to exist
        return None


def _check_run(case: dict, proc, out: Path, before) -> None:
    try:
        stdout, stderr = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail(f"auditor run did not finish in 180 s: {case}")
    stdout, stderr = stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")
    where = f"case {case}\nexit {proc.returncode}\nstderr:\n{stderr[-4000:]}"
    assert proc.returncode in (0, 1, 2), where
    assert "Traceback" not in stderr, where
    leftovers = [p.name for p in (out.parent.iterdir() if out.parent.is_dir() else [])
                 if ".partial-" in p.name or ".old-" in p.name]
    assert not leftovers, f"temporary output left behind: {leftovers}\n{where}"
    if case["out"] in ("file", "long_name") or (case["out"] == "not_empty" and not case["force"]):
        assert proc.returncode == 2, f"an --out that cannot be used was not refused\n{where}"
    if proc.returncode == 2:
        assert "Error:" in stderr, where
        after = _listing(out)
        assert after == before or (before is None and after == []), \
            f"exit 2 changed the output folder: {before} -> {after}\n{where}"
    else:
        written = set(_listing(out) or [])
        assert {"evidence.json", "manifest.json", "policy.yaml"} <= written, f"{written}\n{where}"
        assert ("manifest.sig" in written) == case["identity"], f"{written}\n{where}"
        if case["json"]:
            assert json.loads(stdout.strip().splitlines()[-1])["exit_code"] == proc.returncode, where


_RUN_NUMBERS = itertools.count()
_CLI_PASSED: set[str] = set()
_CLI_FAILED: set[str] = set()


def _case(**fields) -> dict:
    """A CLI case for an explicit example: valid inputs, a fresh --out, unless ``fields`` say otherwise."""
    return {"explanation": {"type": "rules", "max_depth": 2, "min_samples_leaf": 5}, "out": "absent",
            "force": False, "sample": None, "seed": None, "identity": False, "json": False, "history": True,
            "tree_ops": [], "text_ops": [], "data_ops": [], "data_bytes": []} | fields


@fuzz_settings(CLI_RUNS, phases=[Phase.explicit, Phase.generate])
@given(cases=st.tuples(_VALID_CLI_CASE, CLI_CASES))
@example(cases=[_case(out="long_name"),  # was: OSError 'File name too long' from check_destination, exit 1
                _case(tree_ops=[("odd", ("audit", "title"), "\udfff", "suffix")])])  # was: evidence not UTF-8
def test_fuzzed_cli_runs_exit_0_1_or_2_without_traceback_or_partial_output(cli_assets, artifacts, cases):
    """Two runs at a time (the machine has two cores; one of valid inputs, one of any), each in its own folder,
    until CLI_RUNS distinct cases have run; a case that passed is not run again, one that failed is (hypothesis
    replays it to report it)."""
    todo = [c for c in cases if repr(c) in _CLI_FAILED
            or (repr(c) not in _CLI_PASSED and len(_CLI_PASSED) + len(_CLI_FAILED) < CLI_RUNS)]
    n = next(_RUN_NUMBERS)
    started = [_start(case, cli_assets / f"run{n}-{i}", artifacts, cli_assets / "identity")
               for i, case in enumerate(todo)]
    failure = None
    for case, (proc, out, before) in zip(todo, started):
        try:
            _check_run(case, proc, out, before)
            _CLI_PASSED.add(repr(case))
        except (Exception, pytest.fail.Exception) as exc:  # wait for the other run before reporting
            _CLI_FAILED.add(repr(case))
            failure = failure or exc
    if failure is not None:
        raise failure
