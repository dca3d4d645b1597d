"""offerbandit offline evaluation: loading logs, off-policy estimators, replay, MLflow tracking."""
