"""Build the breast-cancer sample audit's data and models, deterministically and offline.

Data: the Wisconsin Diagnostic Breast Cancer set that scikit-learn ships (569 fine-needle aspirates,
30 features computed from digitised images of cell nuclei; Street, Wolberg & Mangasarian 1993;
UCI ML repository, CC BY 4.0). A stratified 70/30 split (seed 0) gives:

- data/train.csv  (398 rows): what the models are trained on; the audit's background data.
- data/test.csv   (171 rows): held out; the audited dataset.

Models, both predicting the diagnosis (malignant / benign):

- models/gbm.skops: scikit-learn GradientBoostingClassifier (100 trees of depth 3), saved with skops.
- models/mlp.pt2:   a 30-64-64-2 PyTorch MLP with input standardisation built in, saved with torch.export
                    (a dynamic batch dimension);
                    outputs logits in the order [malignant, benign].

Run: ``python sample_audits/breast_cancer/build.py`` (``make demo`` runs it when models are missing).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import skops.io as sio
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
CLASSES = ["malignant", "benign"]  # scikit-learn's target codes 0 and 1


class MLP(torch.nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(30, 64), torch.nn.ReLU(),
            torch.nn.Linear(64, 64), torch.nn.ReLU(),
            torch.nn.Linear(64, 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def split() -> tuple[pd.DataFrame, pd.DataFrame]:
    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.data.copy()
    frame["diagnosis"] = np.asarray(CLASSES, dtype=object)[bunch.target.to_numpy()]
    train, test = train_test_split(frame, test_size=0.3, stratify=frame["diagnosis"], random_state=0)
    return train.reset_index(drop=True), test.reset_index(drop=True)


def train_gbm(train: pd.DataFrame) -> GradientBoostingClassifier:
    model = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0)
    return model.fit(train.drop(columns="diagnosis"), train["diagnosis"])


def train_mlp(train: pd.DataFrame) -> MLP:
    torch.manual_seed(0)
    X = torch.tensor(train.drop(columns="diagnosis").to_numpy(), dtype=torch.float32)
    y = torch.tensor([CLASSES.index(v) for v in train["diagnosis"]], dtype=torch.long)
    model = MLP(X.mean(dim=0), X.std(dim=0))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    for _ in range(300):  # full-batch: deterministic on CPU
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(X), y)
        loss.backward()
        optimiser.step()
    model.eval()
    return model


def main() -> None:
    train, test = split()
    (HERE / "data").mkdir(exist_ok=True)
    (HERE / "models").mkdir(exist_ok=True)
    train.to_csv(HERE / "data" / "train.csv", index=False)
    test.to_csv(HERE / "data" / "test.csv", index=False)

    gbm = train_gbm(train)
    sio.dump(gbm, HERE / "models" / "gbm.skops")
    mlp = train_mlp(train)
    example = torch.zeros(4, 30)
    program = torch.export.export(mlp, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(HERE / "models" / "mlp.pt2"))

    X_test = test.drop(columns="diagnosis")
    gbm_acc = (gbm.predict(X_test) == test["diagnosis"]).mean()
    with torch.no_grad():
        logits = mlp(torch.tensor(X_test.to_numpy(), dtype=torch.float32))
    mlp_acc = (np.asarray(CLASSES)[logits.argmax(1).numpy()] == test["diagnosis"]).mean()
    print(f"breast_cancer: gbm test accuracy {gbm_acc:.3f}, mlp test accuracy {mlp_acc:.3f} "
          f"({len(train)} train / {len(test)} test rows)")


if __name__ == "__main__":
    main()
