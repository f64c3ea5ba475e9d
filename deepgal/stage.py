"""What every stage script shares: logging, and turning known failures into one line.

Deliberately light: it imports nothing heavy, so a stage that reads a CSV does not pay for
torch or MLflow at start-up.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from .errors import DeepgalError

# Failures we can explain in the user's terms. Anything else is a bug: let its traceback show.
KNOWN_ERRORS: tuple[type[BaseException], ...] = (DeepgalError, FileNotFoundError, ValueError)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # openTSNE says at INFO which gradient method it chose. MLflow sets its own "mlflow"
    # logger back to INFO when imported, but leaves a child's level alone: hence its system
    # metrics monitor (start/stop lines) by name.
    for noisy in (
        "alembic",
        "mlflow",
        "mlflow.system_metrics",
        "urllib3",
        "numba",
        "matplotlib",
        "h5py",
        "openTSNE",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run(main: Callable[[], int | None], extra_errors: tuple[type[BaseException], ...] = ()) -> None:
    """Call ``main``; a known error becomes ``error: <message>`` on stderr and exit status 1."""
    setup_logging()
    try:
        code = main()
    except KNOWN_ERRORS + extra_errors as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code or 0)
