"""What the data sets' preprocessing shares: checking the images against their set labels."""
import numpy as np


def training_mask(images, sets):
    """``(images, train)``: the images as an array and a mask of the training ones (set 1).

    Raises ValueError unless ``images`` is H x W x C x N, ``sets`` has one entry per image and at
    least one image is a training image.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"preprocess: images must be 4-D (H, W, C, N), got shape {images.shape}")
    n = images.shape[3]
    sets = np.asarray(sets).ravel()
    if sets.shape != (n,):
        raise ValueError(f"preprocess: sets has {sets.size} entries for {n} images")
    train = sets == 1
    if not train.any():
        raise ValueError("preprocess: sets marks no training image (value 1)")
    return images, train
