"""TensorBoard side of torch-visualization. Never imports torch."""
