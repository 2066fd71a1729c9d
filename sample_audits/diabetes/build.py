"""Build the diabetes sample audit's data and models (two regression models), deterministically and offline.

Data: the diabetes study that scikit-learn ships (Efron, Hastie, Johnstone & Tibshirani, "Least Angle
Regression", Annals of Statistics 2004; 442 patients; BSD-3-Clause with scikit-learn): age, sex, body-mass
index, mean blood pressure and six blood serum measurements at baseline, and the target, a quantitative
measure of disease progression one year later (25 to 346). Read unscaled, in the study's own units. A 70/30
split (seed 0) gives:

- data/train.csv (309 rows): what the models are trained on; the audit's background data.
- data/test.csv  (133 rows): held out; the audited dataset.

Models, both predicting the progression score:

- models/gbr.skops: scikit-learn GradientBoostingRegressor (200 trees of depth 2, learning rate 0.05), saved
                    with skops.
- models/mlp.pt2:   a PyTorch MLP (sex one-hot, 11-32-32-1, input standardisation and the target's scale built
                    in), saved with torch.export (a dynamic batch dimension).

Run: ``python sample_audits/diabetes/build.py`` (``make demo`` runs it when models are missing).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import skops.io as sio
import torch
from sklearn.datasets import load_diabetes
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
COLUMNS = {"age": "age", "sex": "sex", "bmi": "bmi", "bp": "bp", "s1": "tc", "s2": "ldl", "s3": "hdl",
           "s4": "tch", "s5": "ltg", "s6": "glu"}
TARGET = "progression"


class MLP(torch.nn.Module):
    """Inputs: the nine numeric measurements, then sex one-hot ([1, 2]); output: the progression score."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, y_mean: float, y_std: float) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.register_buffer("y_mean", torch.tensor(y_mean))
        self.register_buffer("y_std", torch.tensor(y_std))
        self.net = torch.nn.Sequential(torch.nn.Linear(11, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32),
                                       torch.nn.Tanh(), torch.nn.Linear(32, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std) * self.y_std + self.y_mean


def split() -> tuple[pd.DataFrame, pd.DataFrame]:
    bunch = load_diabetes(as_frame=True, scaled=False)
    frame = bunch.data.rename(columns=COLUMNS)
    frame["sex"] = frame["sex"].astype(int)
    frame[TARGET] = bunch.target.astype(float)
    frame.insert(0, "patient", [f"P{i:03d}" for i in range(len(frame))])
    train, test = train_test_split(frame, test_size=0.3, random_state=0)
    return train.reset_index(drop=True), test.reset_index(drop=True)


FEATURES = ["age", "sex", "bmi", "bp", "tc", "ldl", "hdl", "tch", "ltg", "glu"]


def encoded(frame: pd.DataFrame) -> torch.Tensor:
    """The policy's feature order with sex one-hot in place, as the auditor encodes it for the network."""
    cols = []
    for f in FEATURES:
        if f == "sex":
            cols += [(frame["sex"] == 1).astype(float), (frame["sex"] == 2).astype(float)]
        else:
            cols.append(frame[f].astype(float))
    return torch.tensor(np.column_stack(cols), dtype=torch.float32)


def train_mlp(train: pd.DataFrame) -> MLP:
    torch.manual_seed(0)
    X = encoded(train)
    y = torch.tensor(train[TARGET].to_numpy(), dtype=torch.float32)[:, None]
    std = X.std(dim=0)
    model = MLP(X.mean(dim=0), torch.where(std > 0, std, torch.ones_like(std)), float(y.mean()), float(y.std()))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-2)
    for _ in range(150):  # full-batch, deterministic on CPU; early stopped: more epochs overfit 309 rows
        optimiser.zero_grad()
        loss = torch.nn.functional.mse_loss((model(X) - model.y_mean) / model.y_std, (y - model.y_mean) / model.y_std)
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

    gbr = GradientBoostingRegressor(n_estimators=200, max_depth=2, learning_rate=0.05, random_state=0)
    gbr.fit(train[FEATURES], train[TARGET])
    sio.dump(gbr, HERE / "models" / "gbr.skops")
    mlp = train_mlp(train)
    program = torch.export.export(mlp, (torch.zeros(4, 11),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(HERE / "models" / "mlp.pt2"))

    def rmse(pred) -> float:
        return float(np.sqrt(np.mean((np.asarray(pred).ravel() - test[TARGET].to_numpy()) ** 2)))

    with torch.no_grad():
        mlp_pred = mlp(encoded(test)).numpy()
    print(f"diabetes: gbr test RMSE {rmse(gbr.predict(test[FEATURES])):.1f}, mlp test RMSE {rmse(mlp_pred):.1f} "
          f"({len(train)} train / {len(test)} test rows)")


if __name__ == "__main__":
    main()
