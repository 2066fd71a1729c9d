"""Build the liver (PBC) sample audit's data and models, deterministically and offline.

Data: ``pbc.csv``, the Mayo Clinic trial in primary biliary cirrhosis of the liver (1974-1984; Therneau &
Grambsch 2000, "Modeling Survival Data", appendix D), as the R package ``survival`` ships it (see
LICENSE.survival). 418 patients: the 312 randomised in the trial have largely complete records; the other
106 consented only to basic measurements, so their laboratory values (cholesterol, copper, triglycerides,
...) and clinical signs (ascites, hepatomegaly, spiders) are missing: *real* missing values, as a clinical
record holds them. Nothing is imputed here: the models take the missing values as they are.

The outcome is death during follow-up (``status`` 2) against alive or transplanted (0, 1). ``time`` (the
follow-up) and ``trt`` (the trial arm) are not features. A stratified 70/30 split (seed 0) gives:

- data/train.csv  (292 rows): what the models are trained on; the audit's background data.
- data/test.csv   (126 rows): held out; the audited dataset.

Models, both predicting the outcome (died / alive), saved with skops:

- models/hgb.skops:   Pipeline(one-hot categories, missing as their own category → scikit-learn
                      HistGradientBoostingClassifier), which routes missing numbers natively at every split.
- models/logit.skops: Pipeline(numbers: SimpleImputer(median, with missing-indicator columns) + scaling;
                      categories: SimpleImputer('not recorded') + one-hot → LogisticRegression).

Run: ``python sample_audits/liver/build.py`` (``make demo`` runs it when models are missing).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

HERE = Path(__file__).resolve().parent
TARGET = "outcome"
CATEGORICAL = ["sex", "ascites", "hepatomegaly", "spiders", "edema"]
NUMERIC = ["age", "bilirubin", "cholesterol", "albumin", "copper", "alk_phos", "ast", "triglycerides",
           "platelets", "prothrombin", "stage"]


def frame() -> pd.DataFrame:
    raw = pd.read_csv(HERE / "pbc.csv")
    yes_no = {0: "no", 1: "yes"}
    out = pd.DataFrame({
        "patient": raw["id"],
        "age": raw["age"].round(1),
        "sex": raw["sex"].map({"f": "female", "m": "male"}),
        "ascites": raw["ascites"].map(yes_no),
        "hepatomegaly": raw["hepato"].map(yes_no),
        "spiders": raw["spiders"].map(yes_no),
        "edema": raw["edema"].map({0: "none", 0.5: "untreated or resolved", 1: "despite diuretics"}),
        "bilirubin": raw["bili"],
        "cholesterol": raw["chol"],
        "albumin": raw["albumin"],
        "copper": raw["copper"],
        "alk_phos": raw["alk.phos"],
        "ast": raw["ast"],
        "triglycerides": raw["trig"],
        "platelets": raw["platelet"],
        "prothrombin": raw["protime"],
        "stage": raw["stage"],
        TARGET: np.where(raw["status"] == 2, "died", "alive"),
    })
    return out


def split() -> tuple[pd.DataFrame, pd.DataFrame]:
    data = frame()
    train, test = train_test_split(data, test_size=0.3, stratify=data[TARGET], random_state=0)
    return train.sort_values("patient").reset_index(drop=True), test.sort_values("patient").reset_index(drop=True)


def features(data: pd.DataFrame) -> pd.DataFrame:
    # categories as Python objects with NaN for missing, as the auditor hands them to a pipeline
    out = data[NUMERIC + CATEGORICAL].copy()
    for c in CATEGORICAL:
        out[c] = out[c].astype(object).where(out[c].notna(), np.nan)
    return out[["age", "sex", "ascites", "hepatomegaly", "spiders", "edema", "bilirubin", "cholesterol", "albumin",
                "copper", "alk_phos", "ast", "triglycerides", "platelets", "prothrombin", "stage"]]


def train_hgb(X: pd.DataFrame, y: pd.Series) -> Pipeline:
    encode = ColumnTransformer([("categories", OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                                 CATEGORICAL)], remainder="passthrough", verbose_feature_names_out=False)
    model = Pipeline([("encode", encode),
                      ("hgb", HistGradientBoostingClassifier(max_iter=150, learning_rate=0.05, max_depth=3,
                                                             min_samples_leaf=15, random_state=0))])
    return model.fit(X, y)


def train_logit(X: pd.DataFrame, y: pd.Series) -> Pipeline:
    numbers = Pipeline([("impute", SimpleImputer(strategy="median", add_indicator=True)),
                        ("scale", StandardScaler())])
    categories = Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="not recorded")),
                           ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False))])
    encode = ColumnTransformer([("numbers", numbers, NUMERIC), ("categories", categories, CATEGORICAL)])
    model = Pipeline([("encode", encode), ("logit", LogisticRegression(C=0.5, max_iter=2000))])
    return model.fit(X, y)


def main() -> None:
    train, test = split()
    (HERE / "data").mkdir(exist_ok=True)
    (HERE / "models").mkdir(exist_ok=True)
    train.to_csv(HERE / "data" / "train.csv", index=False)
    test.to_csv(HERE / "data" / "test.csv", index=False)
    X_train, X_test = features(train), features(test)
    report = []
    for name, fit in (("hgb", train_hgb), ("logit", train_logit)):
        model = fit(X_train, train[TARGET])
        sio.dump(model, HERE / "models" / f"{name}.skops")
        proba = model.predict_proba(X_test)[:, list(model.classes_).index("died")]
        report.append(f"{name} AUC {roc_auc_score(test[TARGET] == 'died', proba):.3f}")
    gone = int(test[NUMERIC + CATEGORICAL].isna().any(axis=1).sum())
    print(f"liver: {', '.join(report)} ({len(train)} train / {len(test)} test rows; {gone} test rows with a missing "
          "value)")


if __name__ == "__main__":
    main()
