"""The ``deepgal similar`` and ``deepgal explain`` commands, given the arguments
:mod:`deepgal.cli` parsed. Imports happen inside, so ``deepgal --help`` stays quick."""

from __future__ import annotations


def cmd_similar(args) -> int:
    """Look-alikes of one galaxy (``--query``) or the most unusual of a file (``--outliers``)."""
    from ..inference.cutouts import open_cutouts
    from ..utils import pick_device
    from .embed import Model, default_cache_dir
    from .similar import Source, outliers, parse_query, similar

    cut = open_cutouts(args.data)  # before loading a model: bad input fails first
    query = parse_query(args.query, cut) if args.outliers is None else None
    src = Source(
        Model(args.checkpoint, pick_device(args.device)),
        cut,
        args.cache or default_cache_dir(),
        args.batch_size,
        args.tta,
    )
    if query is None:
        df = outliers(src, args.outliers, args.out, args.neighbours, args.index)
    else:
        df = similar(src, query, args.k, args.out, args.index)
    stem = "similar" if query is not None else "outliers"
    print(f"wrote {args.out / (stem + '.png')} and {args.out / (stem + '.csv')} ({len(df)} rows)")
    return 0


def cmd_explain(args) -> int:
    """Grad-CAM maps of ``--rows`` of a file, for each one's predicted class."""
    from ..inference.cutouts import open_cutouts
    from ..utils import pick_device
    from .embed import Model
    from .explain import check_rows, explain

    cut = open_cutouts(args.data)
    rows = check_rows(args.rows, cut)
    df = explain(
        Model(args.checkpoint, pick_device(args.device)), cut, rows, args.out, args.batch_size
    )
    print(
        f"wrote {args.out / 'explain.png'}, explain.csv and explain.npz ({len(df)} images, "
        f"layer {df['layer'][0]})"
    )
    return 0
