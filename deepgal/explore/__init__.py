"""Exploring a file through a trained network's eyes: look-alikes, oddities, attention.

- :mod:`.embed`: the penultimate embedding of every image of a file (HDF5 or folder of
  cut-outs), cached per (checkpoint, file) digest, and of a query image of any size;
- :mod:`.index`: exact cosine k-nearest-neighbour search, scikit-learn or faiss;
- :mod:`.outliers`: a k-nearest-neighbour outlier score per image;
- :mod:`.cam`: Grad-CAM maps through Captum, with a target layer per architecture;
- :mod:`.gallery`: captioned thumbnail galleries (PNG);
- :mod:`.similar`, :mod:`.explain`: what ``deepgal similar`` and ``deepgal explain`` run;
  :mod:`.commands`: their entry points for :mod:`deepgal.cli`.

The heavy imports (torch, faiss, Captum) happen in the submodules, not here.
"""
