"""deepgal: Galaxy10 DECaLS morphology classification as a reproducible DVC + MLflow pipeline."""
__version__ = "0.1.0"
