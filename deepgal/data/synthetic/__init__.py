"""The embedded galaxies: a procedural, seeded renderer of the ten Galaxy10 DECaLS morphologies.

``data.source: synthetic`` renders a file of exactly the Galaxy10 DECaLS layout (images uint8
(N, S, S, 3), ``ans``, ``ra``, ``dec``, ``redshift``, ``pxscale``), so the whole pipeline runs
offline. It is built from how the real cut-outs were made, not fitted to real examples
(sources and figures: docs/renderer.md):

* geometry -- Galaxy Zoo DECaLS cut-outs are 424 px at max(0.04 x petroTheta50, 0.10) "/px
  (willettk/decals, zooniverse/decals), resized to 256 px by Galaxy10 DECaLS (Leung & Bovy;
  henrysky/Galaxy10): a galaxy's half-light radius spans ~6% of the frame whatever its size;
  small galaxies hit the pixel-scale floor and look smaller; DECaLS pixels are 0.262" and the
  seeing FWHM ~1.0-1.5" (Dey et al. 2019), so the PSF is wide in frame units exactly when the
  galaxy is small on the sky;
* photometry -- g, r, z images with the survey's relative depths (g 24.0, r 23.4, z 22.5),
  galaxy colours g-r / r-z of blue discs and red bulges, and the GZ DECaLS colour map
  (``dstn_rgb``: band / scale with g 0.008, r 0.014, z 0.019 nanomaggies into B, G, R;
  asinh; (-0.5, 300) to black and white; ``desaturate``), after Lupton et al. (2004);
* morphology -- what the GZ DECaLS decision tree asks (Walmsley et al. 2022) and Galaxy10
  selects on: smooth bodies by axis ratio (round / in-between / cigar), edge-on discs with and
  without a bulge, barred spirals, unbarred spirals by arm winding (tight / loose), merging
  (a second body of comparable light) and disturbed (one lopsided, clumpy body with tidal
  features) -- and never apparent size or brightness, which the cut-out scaling normalises;
* domain randomisation -- seeing (per band), sky level and noise, colour balance, stretch
  limits and softening, saturation, desaturation, position, foreground stars, background
  galaxies and JPEG compression are drawn wider than their real range, so a model cannot lean
  on a renderer artefact.

Determinism: image ``i`` of ``render(..., seed)`` draws all its randomness from a generator
seeded with ``(seed, i)``, so the bytes depend on (seed, counts, image size) only -- not on
the batch size used to render them. Modules: ``params`` (random draws, per-class priors,
cut-out geometry, display), ``draw`` (profiles, PSF, noise, colour map, JPEG), ``galaxy``
(assembly), ``catalogue`` (ra/dec with planted duplicates), ``dataset`` (counts and the file).
"""
from deepgal.data.synthetic.dataset import (BALANCES, MIN_IMAGE_SIZE, class_counts, render,
                                            render_catalogue, write_synthetic)

__all__ = ["BALANCES", "MIN_IMAGE_SIZE", "class_counts", "render", "render_catalogue",
           "write_synthetic"]
