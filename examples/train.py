"""Train a small fraud classifier and register it as "fraud", with plain MLflow.

Run it with regserve's venv, pointed at regserve (the README's "Serving your own model"):

    . .venv/bin/activate
    export MLFLOW_TRACKING_URI=http://127.0.0.1:8080 MLFLOW_TRACKING_TOKEN=$T
    python examples/train.py

Each run registers a new version of "fraud" and writes rows.csv and rows.json (five rows to
score, without the label) in the current directory, for the README's next commands.
"""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.models import infer_signature
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

COLUMNS = ["amount", "account_age_days", "transactions_24h", "distance_km"]


def main() -> None:
    features, labels = make_classification(
        n_samples=2000, n_features=len(COLUMNS), n_informative=3, n_redundant=0, random_state=7
    )
    frame = pd.DataFrame(features, columns=COLUMNS)
    model = LogisticRegression(max_iter=500).fit(frame, labels)
    example = frame.head(5)
    mlflow.set_experiment("fraud")
    with mlflow.start_run(run_name="fraud-logreg"):
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(example, model.predict(example)),
            input_example=example,
            registered_model_name="fraud",
        )
    example.to_csv("rows.csv", index=False)
    example.to_json("rows.json", orient="records")
    print(f"Registered fraud version {info.registered_model_version}; wrote rows.csv, rows.json")


if __name__ == "__main__":
    main()
