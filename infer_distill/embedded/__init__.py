"""The embedded default dataset (a Fashion-MNIST subset)."""
