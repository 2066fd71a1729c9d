"""A 3-class model runs every tabular explainer, counterfactuals included, and principal reasons work for an
adverse class among several; what a model cannot do is refused at validate, before anything is explained."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from auditor.audit import prepare, run_audit
from auditor.plan import plan_run
from auditor.policy import load_policy

CLASSES = ["high", "low", "mid"]  # sorted, as scikit-learn orders them
HOUSING = ["own", "rent", "free"]
FEATURES = ["income", "debt_ratio", "age", "housing"]


def make_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"income": rng.normal(50, 15, n).round(1), "debt_ratio": rng.random(n).round(3),
                          "age": rng.integers(18, 80, n).astype(float),
                          "housing": rng.choice(HOUSING, n).astype(object)})
    score = (0.06 * (frame.income - 50) - 3 * (frame.debt_ratio - 0.5)
             + frame.housing.map({"own": 1.0, "rent": -0.5, "free": -0.5}) + rng.normal(0, 0.4, n))
    frame["risk"] = np.select([score < -0.6, score < 0.6], ["high", "mid"], "low")
    return frame


def onehot(frame: pd.DataFrame) -> np.ndarray:
    numbers = frame[["income", "debt_ratio", "age"]].to_numpy(dtype=float)
    return np.column_stack([numbers] + [(frame.housing == h).to_numpy(dtype=float) for h in HOUSING])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    import skops.io as sio
    import torch
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    folder = tmp_path_factory.mktemp("multiclass")
    train, test = make_frame(400, 0), make_frame(90, 1)
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    encode = ColumnTransformer([("h", OneHotEncoder(), ["housing"])], remainder="passthrough")
    pipe = Pipeline([("encode", encode), ("hgb", HistGradientBoostingClassifier(max_iter=50, random_state=0))])
    pipe.fit(train[FEATURES], train.risk)
    assert list(pipe.classes_) == CLASSES
    sio.dump(pipe, folder / "hgb.skops")

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net((x - self.mean) / self.std)

    torch.manual_seed(0)
    X = torch.tensor(onehot(train), dtype=torch.float32)
    y = torch.tensor([CLASSES.index(v) for v in train.risk])
    net = Net()
    net.mean, net.std = X.mean(0), X.std(0)
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(X), y).backward()
        opt.step()
    net.eval()
    program = torch.export.export(net, (X[:4],), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(folder / "net.pt2"))
    return folder


def write_policy(folder: Path, explanations: list, **extra) -> Path:
    features = [{"name": n} for n in FEATURES[:3]] + [{"name": "housing", "type": "categorical",
                                                       "categories": HOUSING}]
    tree = {"version": 1,
            "audit": {"id": "three", "title": "Three classes", "audience": "finance", "owner": "t", "intended_use": "u"},
            "models": [{"id": "hgb", "path": "hgb.skops", "format": "skops"},
                       {"id": "net", "path": "net.pt2", "format": "torch_export", "classes": CLASSES}],
            "datasets": [{"id": "test", "path": "test.csv", "target": "risk", "features": features},
                         {"id": "train", "path": "train.csv", "target": "risk", "features": features}],
            "audited": [{"model": "hgb", "dataset": "test", "background": "train"},
                        {"model": "net", "dataset": "test", "background": "train"}],
            "sample": {"size": 9, "strategy": "stratified", "seed": 2},
            "explanations": explanations, "report": {"formats": ["html"]}, **extra}
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return path


EVERY = [{"type": "lime", "num_samples": 500}, {"type": "integrated_gradients", "n_steps": 16},
         {"type": "shapley", "background_rows": 30, "n_samples": 4}, {"type": "rules", "max_depth": 3},
         {"type": "counterfactuals", "count": 2},
         {"type": "counterfactuals", "id": "to_low", "desired": "low", "count": 2, "for": "all"},
         {"type": "permutation_importance", "n_repeats": 2}]


def test_a_three_class_model_runs_every_tabular_explainer(folder):
    policy = load_policy(write_policy(folder, EVERY, principal_reasons={"adverse_class": "high"}))
    evidence = run_audit(plan_run(policy), prepare(policy))
    for s in evidence.subjects:
        ran = [m.name for m in s.methods]
        expected = [e.get("id", e["type"]) for e in EVERY]
        assert ran == (expected if s.model.id == "net" else [n for n in expected if n != "integrated_gradients"])
        assert [m.name for m in s.skipped] == ([] if s.model.id == "net" else ["integrated_gradients"])
        found = 0
        for d in s.decisions:
            searched = d.explanations["counterfactuals"]  # by default the adverse decisions only: recourse
            assert (searched.not_asked == "not adverse") == (d.predicted_label != "high")
            for c in d.explanations["counterfactuals"].counterfactuals:  # any other class
                assert c.predicted_label != d.predicted_label
                found += 1
            low = d.explanations["to_low"]
            if d.predicted_label == "low":
                assert low.asked == 0 and low.counterfactuals == []  # already the desired class
            for c in low.counterfactuals:
                assert c.predicted_label == "low"
            assert (d.principal_reasons is not None) == (d.predicted_label == "high")
            if d.principal_reasons:
                assert d.principal_reasons.reasons  # features pushing towards 'high', the adverse class
        assert found > 0
        summary = next(m.summary for m in s.methods if m.name == "to_low")
        assert summary.asked == 2 * sum(d.predicted_label != "low" for d in s.decisions)


@pytest.mark.parametrize("explanation, field, needle", [
    ({"type": "counterfactuals", "desired": "medium"}, "explanations[0].desired", "'medium' is not a class"),
    ({"type": "counterfactuals", "engine": "reference"}, "explanations[0].desired", "dice-ml searches towards one class"),
])
def test_what_a_model_cannot_do_is_refused_at_validate(folder, explanation, field, needle):
    path = write_policy(folder, [explanation])
    run = subprocess.run([str(Path(sys.executable).parent / "auditor"), "validate", str(path)],
                         capture_output=True, text=True, cwd=folder)
    assert run.returncode == 2, run.stdout + run.stderr
    assert field in run.stderr and needle in run.stderr and "Traceback" not in run.stderr
