"""Evaluation of a model version on a labelled set (``deepscreen eval``): data layouts, scoring,
figures, plots, and recording the figures into the manifest and model card."""
