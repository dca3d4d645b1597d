"""MLflow tracking: the only package of offerbandit that imports mlflow.

:mod:`.tracker` (a small client: experiments, runs, params, metrics, artifacts, the model
registry), :mod:`.registry` (loading a registered model's checkpoint), and how studies and
uplift reports are laid out in MLflow (:mod:`.runs`).
"""
