"""Shared numerics of the applications: k-means and the elbow rule (``clustering``), the robust
foreground votes (``voting``), the saliency-vote / stage-1 clustering / part-unary pipeline shared
by co-segmentation, parts and video (``foreground``), the dense CRF (``crf``) and results off the
device in one copy (``host``)."""
