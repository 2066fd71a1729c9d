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

pytest_plugins = ["fixtures_media"]  # tiny image and text subjects (tiny_image, tiny_text, ...)

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


# --- a small loan dataset with categorical and whole-number features ------------------------------------
#
# Used by the tests of surrogate rules, counterfactuals and principal reasons. Features, in file order:
# income (float), housing (categorical), age (whole years), purpose (categorical), debt_ratio (float) and
# tenure (float, which the models are made to ignore: the pipeline's coefficient for it is set to 0).

LOAN_NUMERIC = ["income", "age", "debt_ratio", "tenure"]
LOAN_CATEGORIES = {"housing": ["free", "own", "rent"], "purpose": ["business", "car", "education", "furniture"]}
LOAN_FEATURES = ["income", "housing", "age", "purpose", "debt_ratio", "tenure"]
LOAN_TARGET = "outcome"
LOAN_DISPLAY = {"income": "Annual income", "housing": "Housing", "age": "Age", "purpose": "Purpose of loan",
                "debt_ratio": "Debt to income", "tenure": "Years with employer"}
LOAN_UNUSED = "tenure"


def make_loans(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "income": np.round(np.clip(rng.normal(50, 15, n), 10, 120), 2),
        "housing": rng.choice(LOAN_CATEGORIES["housing"], n, p=[0.2, 0.45, 0.35]),
        "age": rng.integers(18, 76, n),
        "purpose": rng.choice(LOAN_CATEGORIES["purpose"], n),
        "debt_ratio": np.round(rng.random(n), 3),
        "tenure": np.round(rng.exponential(5, n), 2),
    })
    logit = (0.08 * (frame["income"] - 50) + 0.06 * (frame["age"] - 45) - 3.0 * (frame["debt_ratio"] - 0.5)
             + frame["housing"].map({"free": -1.0, "own": 1.8, "rent": -0.6})
             + frame["purpose"].map({"business": -1.2, "car": 0.4, "education": 0.0, "furniture": 0.3}))
    frame[LOAN_TARGET] = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "good", "bad")
    frame.insert(0, "loan_id", [f"L{seed}-{i:04d}" for i in range(n)])
    return frame


def loan_design(frame: pd.DataFrame) -> np.ndarray:
    """The MLP's input: features in order, numeric as they are, categorical one-hot in category order."""
    cols = []
    for name in LOAN_FEATURES:
        if name in LOAN_CATEGORIES:
            cols += [(frame[name] == c).to_numpy(dtype=np.float64) for c in LOAN_CATEGORIES[name]]
        else:
            cols.append(frame[name].to_numpy(dtype=np.float64))
    return np.column_stack(cols)


def _train_loan_mlp(frame: pd.DataFrame):
    import torch

    class LoanMLP(torch.nn.Module):
        def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
            super().__init__()
            self.register_buffer("mean", mean)
            self.register_buffer("std", std)
            self.net = torch.nn.Sequential(torch.nn.Linear(len(mean), 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net((x - self.mean) / self.std)

    torch.manual_seed(0)
    X = torch.tensor(loan_design(frame), dtype=torch.float32)
    y = torch.tensor([["good", "bad"].index(v) for v in frame[LOAN_TARGET]], dtype=torch.long)
    model = LoanMLP(X.mean(dim=0), X.std(dim=0))
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
    model.eval()
    return model


@dataclass
class Loans:
    folder: Path
    data: Path  # 300 audited rows, id column 'loan_id'
    background: Path  # 400 other rows from the same distribution (the models' training data)
    frame: pd.DataFrame
    background_frame: pd.DataFrame
    pipeline: object  # the fitted sklearn Pipeline saved as pipe.skops (tenure's coefficient is 0)
    prepared: dict  # model id ('pipe', 'mlp') -> Prepared, from loan_policy() as it is

    def policy(self, policy_dir: Path) -> dict:
        """A valid finance policy (as a dict) auditing the pipeline and the MLP on the loan data."""

        def rel(p: Path) -> str:
            return os.path.relpath(p, policy_dir)

        features = [{"name": n, "display_name": LOAN_DISPLAY[n]}
                    | ({"type": "categorical", "categories": list(LOAN_CATEGORIES[n])} if n in LOAN_CATEGORIES else {})
                    for n in LOAN_FEATURES]
        return {
            "version": 1,
            "audit": {"id": "loan-audit", "title": "Loan audit for tests", "audience": "finance",
                      "owner": "Test team", "intended_use": "Exercising rules, counterfactuals and reasons."},
            "models": [
                {"id": "pipe", "path": rel(self.folder / "pipe.skops"), "format": "skops", "positive_class": "bad"},
                {"id": "mlp", "path": rel(self.folder / "mlp.pt"), "format": "torchscript",
                 "classes": ["good", "bad"], "positive_class": "bad"},
            ],
            "datasets": [
                {"id": "loans", "path": rel(self.data), "target": LOAN_TARGET, "id_column": "loan_id",
                 "features": copy.deepcopy(features)},
                {"id": "history", "path": rel(self.background), "target": LOAN_TARGET, "id_column": "loan_id",
                 "features": copy.deepcopy(features)},
            ],
            "audited": [
                {"model": "pipe", "dataset": "loans", "background": "history"},
                {"model": "mlp", "dataset": "loans", "background": "history"},
            ],
            "sample": {"size": 6, "strategy": "stratified", "seed": 5},
            "explanations": [
                {"type": "lime", "num_samples": 400},
                {"type": "counterfactuals", "count": 2, "immutable": ["housing"],
                 "permitted_range": {"income": [20, 90], "purpose": ["car", "education", "furniture"]}},
                {"type": "rules", "max_depth": 3, "min_samples_leaf": 10},
            ],
            "principal_reasons": {"adverse_class": "bad",
                                  "texts": {"income": "Income insufficient for amount of credit requested",
                                            "debt_ratio": "Excessive obligations in relation to income"}},
            "report": {"formats": ["html"], "top_features": 6},
        }

    def write(self, policy_dir: Path, name: str = "loan_policy.yaml", **overrides) -> Path:
        """Write the loan policy with ``write_policy``-style overrides (``a__0__b=value``, ``DELETE``)."""
        tree = self.policy(Path(policy_dir))
        for key, value in overrides.items():
            _set(tree, key.split("__"), value)
        path = Path(policy_dir) / name
        path.write_text(yaml.safe_dump(tree, sort_keys=False, default_flow_style=False), encoding="utf-8")
        return path


@pytest.fixture(scope="session")
def loans(tmp_path_factory) -> Loans:
    """Real loan data, a scikit-learn one-hot pipeline (skops) and a TorchScript MLP, prepared by the auditor."""
    import skops.io as sio
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from auditor.audit import prepare
    from auditor.policy import load_policy

    folder = tmp_path_factory.mktemp("loans")
    data, background = make_loans(300, seed=21), make_loans(400, seed=22)
    data.to_csv(folder / "loans.csv", index=False)
    background.to_csv(folder / "history.csv", index=False)

    categorical = list(LOAN_CATEGORIES)
    pipeline = Pipeline([
        ("encode", ColumnTransformer([
            ("cat", OneHotEncoder(categories=[LOAN_CATEGORIES[c] for c in categorical]), categorical),
            ("num", StandardScaler(), LOAN_NUMERIC),
        ])),
        ("classify", LogisticRegression(C=10.0, max_iter=1000)),
    ]).fit(background[LOAN_FEATURES], background[LOAN_TARGET])
    out_names = list(pipeline[:-1].get_feature_names_out())
    pipeline[-1].coef_[0, out_names.index(f"num__{LOAN_UNUSED}")] = 0.0  # the model ignores tenure, exactly
    sio.dump(pipeline, folder / "pipe.skops")
    save_torchscript(_train_loan_mlp(background), folder / "mlp.pt")

    loans = Loans(folder, folder / "loans.csv", folder / "history.csv", data, background, pipeline, {})
    policy_dir = tmp_path_factory.mktemp("loan_policy")
    loans.prepared.update({p.model.id: p for p in prepare(load_policy(loans.write(policy_dir)))})
    return loans
