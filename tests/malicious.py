"""A pickle payload for tests of loaders that must refuse code: unpickling it would call
``open(marker, 'w')``, so a marker file that appears proves the code ran."""

from __future__ import annotations

from pathlib import Path


class OpensMarker:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))
