"""Evaluation: readers of published data-set layouts (``datasets``), ``metrics`` (Jaccard, NMI,
PCK, ...) and the runs behind ``vitdense evaluate`` (``runner``)."""
