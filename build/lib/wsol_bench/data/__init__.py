"""Ground truth, class orders, images and data sets."""
