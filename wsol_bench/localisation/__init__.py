"""Localisation: boxes for the top-k classes of an image from its saliency maps (the method),
and the sharded, resumable run over a data set (the benchmark)."""
