"""deepgal's figures, one module a kind, each ``plot_*`` writing one PNG atomically and
returning the matplotlib Figure (so callers and tests can inspect titles and legends):

- :mod:`deepgal.plots.common`: the class and variant palettes, figure creation, PNG saving;
- :mod:`deepgal.plots.curves`: accuracy and loss per epoch of every variant;
- :mod:`deepgal.plots.confusion`: a confusion matrix (drawn by the evaluate stage);
- :mod:`deepgal.plots.embeddings`: a variant's UMAP / t-SNE / PCA x split grid, and one map
  compared across variants;
- :mod:`deepgal.plots.images`: sample grid, augmentation preview, confused-pairs gallery;
- :mod:`deepgal.plots.offline`: the HTML template that lets ``dvc plots show`` render offline.

Import the module you need (``from deepgal.plots.confusion import plot_confusion``): this file
re-exports nothing, so a stage that draws one kind of figure depends on that module only.
"""
