"""The package's own shape: no import cycle, no module over the house limit, one home per family and modality.

Imports are read from the source (every import that runs counts, lazy ones inside functions too; those
under ``if TYPE_CHECKING:`` do not).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from auditor.explainers import EXPLAINERS

PACKAGE = Path(__file__).resolve().parents[1] / "auditor"
TEMPLATES = PACKAGE.parent / "templates"
MAX_LINES = 600


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, known: set[str]) -> set[str]:
    me = _module(path)
    base = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                   for child in node.body for n in ast.walk(child)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            anchor = base[: len(base) - node.level + 1] if node.level else []
            prefix = ".".join(anchor + ([node.module] if node.module else []))
            names = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            for k in range(len(parts), 0, -1):
                candidate = ".".join(parts[:k])
                if candidate in known and candidate != me and not me.startswith(candidate + "."):
                    out.add(candidate)
                    break
    return out


def test_no_import_cycle():
    files = sorted(PACKAGE.rglob("*.py"))
    known = {_module(f) for f in files}
    graph = {_module(f): _imports(f, known) for f in files}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                loop = stack[stack.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(loop))
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert "auditor.explainers" in graph["auditor.policy"]  # the graph is real: policy reads the registry


def test_no_module_over_the_house_limit():
    sizes = {str(f.relative_to(PACKAGE.parent)): sum(1 for _ in f.open(encoding="utf-8")) for f in PACKAGE.rglob("*.py")}
    assert {f: n for f, n in sizes.items() if n > MAX_LINES} == {}


def _mentions(word: str) -> list[str]:
    pattern = re.compile(word, re.I)
    files = [*PACKAGE.rglob("*.py"), *TEMPLATES.rglob("*.j2"), *TEMPLATES.rglob("*.css")]
    return sorted(str(f.relative_to(PACKAGE.parent)) for f in files if pattern.search(f.read_text(encoding="utf-8")))


def test_the_newest_family_lives_in_its_module_the_registry_and_its_partial():
    """grep -ril shapley auditor templates: the family's module, the registry and its partial, nothing else."""
    assert _mentions("shapley") == ["auditor/explainers/__init__.py", "auditor/explainers/shapley.py",
                                    "templates/partials/methods/shapley.html.j2"]


def test_no_dispatch_on_a_family_or_a_kind_of_data_outside_its_home():
    """No comparison with a family's name or a result's ``method`` tag outside the families' modules and
    partials, and no ``kind ==`` on datasets outside the modalities."""
    tags = set(EXPLAINERS) | {r.model_fields["method"].default for f in EXPLAINERS.values() for r in f.Results}
    names = "|".join(sorted(map(re.escape, tags)))
    chains = re.compile(rf"""(==|!=|\bin\s*[(\[{{])\s*["']({names})["']|["']({names})["']\s*(==|!=)""")
    kinds = re.compile(r"""\bkind\s*(==|!=)\s*["'](tabular|image|text)["']""")
    offenders = []
    for f in PACKAGE.rglob("*.py"):
        rel = f.relative_to(PACKAGE)
        text = f.read_text(encoding="utf-8")
        if rel.parts[0] != "explainers" and chains.search(text):
            offenders.append(f"{rel}: {chains.search(text).group()}")
        if rel.parts[0] != "modalities" and kinds.search(text):
            offenders.append(f"{rel}: {kinds.search(text).group()}")
    for f in TEMPLATES.rglob("*.j2"):
        rel = f.relative_to(TEMPLATES)
        if rel.parts[:2] != ("partials", "methods") and chains.search(f.read_text(encoding="utf-8")):
            offenders.append(f"{rel}: {chains.search(f.read_text(encoding='utf-8')).group()}")
    assert offenders == []


@pytest.mark.parametrize("name", sorted(EXPLAINERS))
def test_every_family_is_complete(name):
    """Spec, results, title, methods text, figures as summary fields, and a partial that exists."""
    family = EXPLAINERS[name]
    assert family.Spec.model_fields["type"].annotation.__args__ == (name,)
    assert family.Results and all("method" in r.model_fields for r in family.Results)
    assert family.title and all([family.notes.computes, family.notes.reading, family.notes.limits, family.notes.cite])
    for figure in family.figures:
        assert any(figure in s.model_fields for s in family.Summaries), figure
    assert (TEMPLATES / family.partial).is_file()
