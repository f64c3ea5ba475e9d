"""deepgal: Galaxy10 DECaLS morphology classification as a reproducible DVC + MLflow pipeline.

Kept free of code on purpose: every stage imports this file, so code here would have to be a
dependency of every stage in dvc.yaml (the version lives in pyproject.toml).
"""
