"""Data sets for the examples: CIFAR-10 (:mod:`cnnx.datasets.cifar10`) with MatConvNet's preprocessing."""
from . import cifar10

__all__ = ["cifar10"]
