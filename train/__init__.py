"""Datasets, augmentation, loss, the training loop and evaluation."""
