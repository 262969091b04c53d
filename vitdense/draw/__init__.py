"""Results -> pictures: numpy ``uint8`` H x W x 3 images (and plotly figures where hovering helps).

Nothing here computes a result; every function takes arrays (or the small result dataclasses of
the compute modules, read by attribute) and returns a new image. Conventions:

* images are RGB ``uint8`` arrays ``H x W x 3`` (PIL images, grey / RGBA / float arrays and paths
  are accepted as input and converted by :func:`as_rgb`);
* points are ``(y, x)`` in the pixels of the image they are drawn on (the compute modules return
  original-image pixels, i.e. the caller's image);
* maps (masks, label maps, heat maps) of another size than the image - e.g. a patch-grid map - are
  resized to the image: with the optional ``geometry`` (``vitdense.features.extractor.Geometry``) exactly
  by patch centres, otherwise by stretching (nearest for labels and masks, bilinear for heat);
* cluster label maps (``*_labels`` functions): values ``>= 0`` are clusters, negative values
  are background / none; label ``k`` always gets ``PALETTE[k]`` whatever image it is in;
* part maps (``*_parts`` functions, the :class:`~vitdense.apps.parts.PartsResult`
  convention): ``0`` = background, ``1..K`` = parts; part ``p`` always gets ``PALETTE[p - 1]``.

Colormaps are small numpy lookup tables (no matplotlib).
"""
from __future__ import annotations

from vitdense.draw.colors import (  # noqa: F401
    BACKGROUND_COLOR,
    PALETTE,
    apply_colormap,
    part_colors,
    point_colors,
)
from vitdense.draw.figures import parts_figure, similarity_figure  # noqa: F401
from vitdense.draw.maps import (  # noqa: F401
    as_rgb,
    checkerboard,
    color_labels,
    color_parts,
    cutout,
    heatmap_overlay,
    highlight_parts,
    top_heatmap,
    labels_rgba,
    overlay_labels,
    overlay_mask,
    overlay_parts,
    parts_rgba,
    pca_images,
    resize_map,
    saliency_overlay,
)
from vitdense.draw.points import draw_correspondences, draw_markers, side_by_side  # noqa: F401
from vitdense.draw.results import (  # noqa: F401
    draw_correspondence_result,
    draw_cosegmentation,
    draw_parts,
    draw_pca,
    draw_point_match,
    draw_similarity,
    draw_transfer,
    draw_video_parts,
)

__all__ = [
    "PALETTE", "BACKGROUND_COLOR", "as_rgb", "part_colors", "point_colors",
    "apply_colormap", "resize_map", "checkerboard", "overlay_mask", "cutout", "color_labels",
    "labels_rgba", "overlay_labels", "draw_markers", "draw_correspondences", "side_by_side",
    "heatmap_overlay", "top_heatmap", "saliency_overlay", "pca_images", "parts_figure",
    "similarity_figure", "color_parts", "parts_rgba", "overlay_parts", "draw_cosegmentation",
    "draw_parts", "draw_correspondence_result", "draw_point_match", "draw_similarity",
    "draw_pca", "draw_video_parts",
]

