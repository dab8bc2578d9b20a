"""Data sets for the examples: CIFAR-10 (:mod:`cnnx.datasets.cifar10`) and MNIST
(:mod:`cnnx.datasets.mnist`, with a 5,000-digit sample that ships with cnnx), prepared as
MatConvNet's examples prepare them."""
from . import cifar10, mnist

__all__ = ["cifar10", "mnist"]
