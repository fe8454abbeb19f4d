"""Pictures: labelled image grids (pillow, in :mod:`.grids`) and charts (matplotlib's Agg backend, in
:mod:`.charts`; no display needed).  Every function returns a ``PIL.Image`` so that callers save, stack and
embed grids and charts the same way."""
from .charts import (factor_chart, figure_to_image, iterative_path_chart, line_chart, sfvq_pca_chart,
                     sfvq_training_chart, warpage_chart)
from .grids import (diff_map, font, hstack, image_grid, save_png, to_uint8, traversal_grid, vertex_grid, vstack,
                    with_caption)

__all__ = ["diff_map", "factor_chart", "figure_to_image", "font", "hstack", "image_grid", "iterative_path_chart",
           "line_chart", "save_png", "sfvq_pca_chart", "sfvq_training_chart", "to_uint8", "traversal_grid",
           "vertex_grid", "vstack", "warpage_chart", "with_caption"]
