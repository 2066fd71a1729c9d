"""Shared fixtures: a tiny real dataset, real models saved to disk, and a policy that points at them.

Everything here is real: a CSV written with pandas, a scikit-learn LogisticRegression saved with
skops, a small PyTorch MLP saved as TorchScript. They are trained once per test session (they take a
fraction of a second) and each test writes its own policy YAML next to them with ``write_policy``.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

FEATURES = ["f0", "f1", "f2", "f3"]
TARGET = "label"
CLASSES = ["no", "yes"]  # LogisticRegression's classes_ (sorted); the MLP's outputs use the same order
TRUE_WEIGHTS = np.array([2.0, -1.5, 1.0, 0.0])

REPO = Path(__file__).resolve().parents[1]
SAMPLE_POLICY = REPO / "policies" / "breast_cancer_medical.yaml"

DELETE = object()
"""Pass as an override value to remove a key from the policy."""


@dataclass(frozen=True)
class Artifacts:
    """Files the tiny audit uses, all in one session-scoped folder."""

    folder: Path
    data: Path  # 120 rows, numeric features f0..f3, target 'label' in {'no', 'yes'}, id column 'case'
    background: Path  # 200 other rows from the same distribution
    logreg: Path  # skops LogisticRegression fitted on a DataFrame (feature_names_in_ = f0..f3)
    mlp: Path  # TorchScript MLP 4-16-2, outputs logits in order CLASSES
    pickle: Path  # the same LogisticRegression saved with joblib


def save_torchscript(module, path: Path) -> Path:
    """Script and save a torch module (torch 2.13 marks TorchScript deprecated; it is the auditor's format)."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = module if isinstance(module, torch.jit.ScriptModule) else torch.jit.script(module)
        torch.jit.save(scripted, str(path))
    return Path(path)


def make_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(FEATURES)))
    logit = X @ TRUE_WEIGHTS
    y = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    frame = pd.DataFrame(X, columns=FEATURES)
    frame[TARGET] = np.where(y, "yes", "no")
    return frame


def _train_mlp(frame: pd.DataFrame):
    import torch

    class MLP(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(len(FEATURES), 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

    torch.manual_seed(0)
    X = torch.tensor(frame[FEATURES].to_numpy(), dtype=torch.float32)
    y = torch.tensor([CLASSES.index(v) for v in frame[TARGET]], dtype=torch.long)
    model = MLP()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
    model.eval()
    return model


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Artifacts:
    import joblib
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    folder = tmp_path_factory.mktemp("artifacts")
    data = make_frame(120, seed=1)
    data.insert(0, "case", [f"c{i:03d}" for i in range(len(data))])
    background = make_frame(200, seed=2)
    data.to_csv(folder / "data.csv", index=False)
    background.to_csv(folder / "background.csv", index=False)

    logreg = LogisticRegression().fit(background[FEATURES], background[TARGET])
    assert list(logreg.classes_) == CLASSES
    sio.dump(logreg, folder / "logreg.skops")
    joblib.dump(logreg, folder / "logreg.pkl")
    save_torchscript(_train_mlp(background), folder / "mlp.pt")
    return Artifacts(folder, folder / "data.csv", folder / "background.csv", folder / "logreg.skops",
                     folder / "mlp.pt", folder / "logreg.pkl")


def base_policy(artifacts: Artifacts, policy_dir: Path) -> dict:
    """A valid policy (as a dict) auditing both tiny models, paths relative to ``policy_dir``."""

    def rel(p: Path) -> str:
        return os.path.relpath(p, policy_dir)

    features = [{"name": n} for n in FEATURES]
    return {
        "version": 1,
        "audit": {
            "id": "tiny-audit",
            "title": "Tiny audit for tests",
            "audience": "medical",
            "owner": "Test team",
            "intended_use": "Exercising the auditor in its test suite.",
        },
        "models": [
            {"id": "logreg", "path": rel(artifacts.logreg), "format": "skops"},
            {"id": "mlp", "path": rel(artifacts.mlp), "format": "torchscript", "classes": list(CLASSES),
             "positive_class": "yes"},
        ],
        "datasets": [
            {"id": "data", "path": rel(artifacts.data), "target": TARGET, "id_column": "case",
             "features": copy.deepcopy(features)},
            {"id": "background", "path": rel(artifacts.background), "target": TARGET,
             "features": copy.deepcopy(features)},
        ],
        "audited": [
            {"model": "logreg", "dataset": "data", "background": "background"},
            {"model": "mlp", "dataset": "data", "background": "background"},
        ],
        "sample": {"size": 6, "strategy": "stratified", "seed": 3},
        "explanations": [
            {"type": "integrated_gradients", "n_steps": 16},
            {"type": "lime", "num_samples": 500},
            {"type": "permutation_importance", "n_repeats": 2},
        ],
        "report": {"formats": ["html"], "top_features": 4},
    }


def _set(tree, keys: list[str], value) -> None:
    node = tree
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    last = keys[-1]
    if isinstance(node, list):
        if value is DELETE:
            del node[int(last)]
        elif int(last) == len(node):
            node.append(value)
        else:
            node[int(last)] = value
    elif value is DELETE:
        del node[last]
    else:
        node[last] = value


@pytest.fixture
def write_policy(artifacts):
    """``write_policy(tmp_path, name="policy.yaml", **overrides) -> Path``.

    Writes the valid base policy as block-style YAML (one key per line, so a test can find the line
    of the field it broke). Overrides use ``__`` for nesting and numbers for list items, e.g.
    ``sample__size=-3`` or ``models__0__format="pickle"``; an index one past the end appends; the value
    ``DELETE`` removes the key.
    """

    def write(tmp_path: Path, name: str = "policy.yaml", **overrides) -> Path:
        tree = base_policy(artifacts, tmp_path)
        for key, value in overrides.items():
            _set(tree, key.split("__"), value)
        path = Path(tmp_path) / name
        path.write_text(yaml.safe_dump(tree, sort_keys=False, default_flow_style=False), encoding="utf-8")
        return path

    return write


def line_of(path: Path, needle: str) -> int:
    """1-based number of the only line of ``path`` containing ``needle``."""
    hits = [i for i, text in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1) if needle in text]
    assert len(hits) == 1, f"{needle!r} found on lines {hits}"
    return hits[0]


@pytest.fixture(scope="session")
def tiny(artifacts, tmp_path_factory):
    """The base policy loaded and prepared: {'policy', 'logreg': Prepared, 'mlp': Prepared}."""
    from auditor.audit import prepare
    from auditor.policy import load_policy

    folder = tmp_path_factory.mktemp("tiny_policy")
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(base_policy(artifacts, folder), sort_keys=False), encoding="utf-8")
    policy = load_policy(path)
    prepared = {p.model.id: p for p in prepare(policy)}
    return {"policy": policy, **prepared}
