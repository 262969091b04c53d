"""Model and features: images in, dense descriptors out.

``images`` (reading, limits, the resize rule) -> ``models`` / ``bundled`` (weights) -> ``extractor``
(one fused forward pass: facets, layers, log-binning, saliency; ``rope`` for DINOv3) ->
``descriptors`` (``ImageDescriptors``, ``Geometry``) kept in ``cache``; ``upsample`` turns grid
descriptors into per-pixel ones.
"""
