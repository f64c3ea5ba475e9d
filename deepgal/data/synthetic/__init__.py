"""The embedded galaxies: a procedural, seeded renderer of the ten Galaxy10 morphologies.

``data.source: synthetic`` renders a file of exactly the Galaxy10 DECaLS layout, so the whole
pipeline runs offline. Each class is built from physical parts -- Sérsic bulges, exponential
discs, logarithmic arms (tight for class 6, loose for 7), bars and rings (5), edge-on discs
with dust lanes and with (9) or without (8) a bulge, smooth bodies by axis ratio (2 round,
3 in-between, 4 cigar), pairs with tidal tails (1), lopsided clumpy blue systems (0) -- with
yellow-orange bulges and bluish patchy discs, then a PSF, foreground stars, background
galaxies, sky noise and a colour-preserving asinh stretch onto a dark grey sky.

Why it looks the way it does: the statistics were measured on the 50 real Galaxy10 images
(``../shared/data``) and the priors randomised around them. Real cut-outs show a small,
centred galaxy (isophotal radius ~0.13-0.31 of the frame) with a saturated yellowish core,
on a dark grey sky (~35/255; noise ~10/255 at 256 px, ~3/255 once resized to 64 px) holding
dozens of stars and faint galaxies. The renderer matches those figures at 64 and 256 px.

Determinism: image ``i`` of ``render(..., seed)`` draws all its randomness from a generator
seeded with ``(seed, i)``, so the bytes depend on (seed, counts, image size) only -- not on
the batch size used to render them. Modules: ``params`` (random draws and per-class priors),
``draw`` (profiles, PSF, noise, stretch), ``galaxy`` (assembly), ``dataset`` (the file).
"""
from deepgal.data.synthetic.dataset import (BALANCES, MIN_IMAGE_SIZE, class_counts, render,
                                            write_synthetic)

__all__ = ["BALANCES", "MIN_IMAGE_SIZE", "class_counts", "render", "write_synthetic"]
