"""Cython kernels. Nothing here checks its inputs: the Python block functions do that first."""
