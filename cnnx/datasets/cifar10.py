"""CIFAR-10 as MatConvNet's ``cnn_cifar`` example prepares it.

The data come from the python version of CIFAR-10 (``cifar-10-python.tar.gz``), downloaded from
the official address with pooch (checksum, progress bar, retries) when it is not in the data
folder. :func:`get_imdb` turns it into MatConvNet's
imdb: 32x32x3xN float32 images in (H, W, C, N) order, labels 1..10, set 1 for the 50,000 training
images and 3 for the 10,000 test images (MatConvNet validates on the test set), preprocessed as
``getCifarImdb`` does (mean removal, contrast normalisation, ZCA whitening) and cached on disk.
:func:`get_batch` is the example's batch function, with its random horizontal flips.

The same preprocessing must be applied to any new image before it is classified: the statistics are
those of this data set (see :func:`preprocess`).
"""
import codecs
import os
import pickle
import tarfile
import zlib

import numpy as np

from .._files import atomic_open
from ._download import RETRIES, fetch
from ._imdb import training_mask

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE = "cifar-10-python.tar.gz"

_FOLDER = "cifar-10-batches-py"
_TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
_TEST_BATCH = "test_batch"
_SIDE = 32
_PIXELS = _SIDE * _SIDE * 3
_CONTRAST_FLOOR = 40.0
_WHITENING_FLOOR = 10.0
_ROWS_PER_CHUNK = 4096
_CACHE_VERSION = 1


def download(data_dir, url=URL, md5=MD5, timeout=60.0, progress=True, retries=RETRIES):
    """Download the CIFAR-10 archive into ``data_dir`` with pooch, checking its MD5.

    The file is written to a temporary name in ``data_dir`` and renamed to
    ``cifar-10-python.tar.gz`` only once it is complete and its checksum matches; on any failure
    (no network, an interrupted transfer, a wrong checksum, a full disk) the partial file is
    removed. A transfer that breaks off or arrives damaged is tried again ``retries`` times; a
    server that cannot be reached is not. An archive already there with the right checksum is
    not downloaded again.

    Parameters
    ----------
    data_dir : str or path-like
        Folder to put the archive in (created if needed).
    url : str, default the official address
        Where to download from.
    md5 : str, default the official archive's checksum
        Expected MD5 of the download (hexadecimal).
    timeout : float, default 60
        Seconds to wait for the server before giving up.
    progress : bool, default True
        Show a progress bar (tqdm) per file on stderr, and why a download is tried again.
    retries : int, default 2
        Further attempts after a broken transfer or a wrong checksum.

    Returns
    -------
    path : str
        Path of the verified archive.

    Raises
    ------
    RuntimeError
        If the download fails or its checksum does not match; the message says where to put a
        manually downloaded archive.
    OSError
        If the archive cannot be written (a full disk); the message names it.

    Examples
    --------
    >>> from cnnx.datasets import cifar10
    >>> cifar10.download("data/cifar")  # doctest: +SKIP
    'data/cifar/cifar-10-python.tar.gz'
    """
    data_dir = os.fspath(data_dir)
    os.makedirs(data_dir, exist_ok=True)
    where = f"download {url} yourself and put it in {os.path.abspath(data_dir)} as {ARCHIVE}"
    fetch([url], data_dir, ARCHIVE, f"md5:{md5.lower()}", "cifar10", "CIFAR-10", where,
          timeout=timeout, progress=progress, retries=retries)
    return os.path.join(data_dir, ARCHIVE)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds NumPy arrays, so a tampered archive cannot run code."""

    _reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
    _allowed = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # how Python 3 writes bytes in protocol 2
    }

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"cifar10: the archive's pickles may only hold arrays, found {module}.{name}"
            ) from None


def _unpickle(tar, path, name):
    try:
        member = tar.extractfile(f"{_FOLDER}/{name}")
    except KeyError:
        member = None
    if member is None:
        raise ValueError(
            f"cifar10: {path} has no {_FOLDER}/{name}; is it the python version of CIFAR-10?"
        )
    with member:
        return _ArrayUnpickler(member, encoding="bytes").load()


def _batch_rows(batch, path, name):
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"cifar10: {name} in {path} is not a CIFAR-10 batch (data and labels)")
    rows = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"])
    if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != _PIXELS:
        raise ValueError(
            f"cifar10: {name} in {path} holds {rows.dtype} data of shape {rows.shape}, expected "
            f"uint8 rows of {_PIXELS} values"
        )
    if labels.shape != (rows.shape[0],) or labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise ValueError(f"cifar10: {name} in {path} has labels that do not match its images")
    return rows, labels


def rows_to_images(rows):
    """Turn CIFAR rows (R, G, B planes of 32x32 row-major pixels) into (H, W, C, N) images.

    ``images[h, w, c, n] = rows[n, 1024*c + 32*h + w]``, which is what MatConvNet's
    ``permute(reshape(data', 32, 32, 3, []), [2 1 3 4])`` gives: images are upright, not
    transposed.

    Parameters
    ----------
    rows : ndarray, shape (N, 3072)
        One image per row, as stored in the CIFAR-10 batches.

    Returns
    -------
    images : ndarray, shape (32, 32, 3, N)
        Fortran-ordered, same dtype as ``rows``.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.datasets import cifar10
    >>> rows = np.zeros((1, 3072), dtype=np.uint8)
    >>> rows[0, 1024 + 32 * 2 + 7] = 255  # green, row 2, column 7
    >>> images = cifar10.rows_to_images(rows)
    >>> images.shape, images[2, 7, 1, 0]
    ((32, 32, 3, 1), np.uint8(255))
    """
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[1] != _PIXELS:
        raise ValueError(f"rows_to_images: rows must have shape (N, {_PIXELS}), got {rows.shape}")
    n = rows.shape[0]
    by_plane = rows.reshape(n, 3, _SIDE, _SIDE).transpose(0, 1, 3, 2)  # (n, c, w, h)
    return np.ascontiguousarray(by_plane).T


def load(data_dir, url=URL, md5=MD5, progress=True):
    """Read the raw CIFAR-10 images, downloading the archive when it is missing.

    Parameters
    ----------
    data_dir : str or path-like
        Folder holding ``cifar-10-python.tar.gz`` (downloaded there if missing; an archive already
        there is used as it is).
    url, md5, progress
        Passed to :func:`download`.

    Returns
    -------
    images : ndarray of uint8, shape (32, 32, 3, 60000)
        Fortran-ordered (H, W, C, N), RGB; the 50,000 training images first, then the test images.
    labels : ndarray of float32, shape (60000,)
        Classes 1..10.
    sets : ndarray of uint8, shape (60000,)
        1 for training images, 3 for test images.
    classes : list of str
        Class names in label order.

    Raises
    ------
    RuntimeError
        If the archive is missing and cannot be downloaded.
    ValueError
        If the archive is damaged or does not hold the python version of CIFAR-10.
    pickle.UnpicklingError
        If the archive's pickles hold anything but arrays, lists and strings (they are never
        allowed to run code).

    Examples
    --------
    >>> from cnnx.datasets import cifar10
    >>> images, labels, sets, classes = cifar10.load("data/cifar")  # doctest: +SKIP
    >>> images.shape, classes[0]  # doctest: +SKIP
    ((32, 32, 3, 60000), 'airplane')
    """
    path = os.path.join(os.fspath(data_dir), ARCHIVE)
    if not os.path.exists(path):
        download(data_dir, url=url, md5=md5, progress=progress)
    rows, labels, sets = [], [], []
    try:
        with tarfile.open(path, "r:gz") as tar:
            for name, set_id in [(b, 1) for b in _TRAIN_BATCHES] + [(_TEST_BATCH, 3)]:
                batch_rows, batch_labels = _batch_rows(_unpickle(tar, path, name), path, name)
                rows.append(batch_rows)
                labels.append(batch_labels)
                sets.append(np.full(len(batch_labels), set_id, dtype=np.uint8))
            meta = _unpickle(tar, path, "batches.meta")
    except (tarfile.TarError, EOFError, zlib.error) as error:
        raise ValueError(
            f"cifar10: cannot read {path} ({error}); delete it to download it again"
        ) from error
    classes = [name.decode() if isinstance(name, bytes) else str(name)
               for name in meta[b"label_names"]]
    images = rows_to_images(np.concatenate(rows))
    return images, np.concatenate(labels).astype(np.float32) + 1, np.concatenate(sets), classes


def _chunks(n):
    return [slice(start, min(start + _ROWS_PER_CHUNK, n)) for start in range(0, n, _ROWS_PER_CHUNK)]


def _zca_matrix(z, train, n_images, floor):
    """ZCA matrix ``V diag(en / max(sqrt(d), floor)) V'`` of ``W = z[train]' z[train] / n_images``.

    The eigenvalues ``d`` of ``W`` come from ``eigh(W)``, or, when there are fewer training rows
    than dimensions, from the SVD of the training rows (the missing eigenvalues are zero, so their
    directions all get the floored scale ``en / floor``).
    """
    dims = z.shape[1]
    n_train = int(np.count_nonzero(train))
    if n_train >= dims:
        cov = np.zeros((dims, dims))
        for rows in _chunks(z.shape[0]):
            block = z[rows][train[rows]]
            cov += block.T @ block
        eigenvalues, vectors = np.linalg.eigh(cov / n_images)
    else:
        _, singular, rows_t = np.linalg.svd(z[train].astype(np.float64), full_matrices=False)
        eigenvalues, vectors = singular**2 / n_images, rows_t.T
    eigenvalues = np.maximum(eigenvalues, 0)  # round-off can make tiny ones negative
    en = np.sqrt(eigenvalues.sum() / dims)
    rest = en / floor
    scale = en / np.maximum(np.sqrt(eigenvalues), floor)
    matrix = (vectors * (scale - rest)) @ vectors.T
    matrix[np.diag_indices(dims)] += rest
    return matrix


def preprocess(images, sets, whiten=True, contrast_normalization=True):
    """MatConvNet's CIFAR preprocessing: mean removal, contrast normalisation, ZCA whitening.

    ``data = preprocess(images, sets)`` computes, in float32 on the 0..255 scale:

    1. subtract the mean training image (``sets == 1``), per pixel and channel, from every image;
    2. contrast normalisation (Coates et al.): subtract each image's mean, then multiply it by
       ``mean(s) / max(s_i, 40)``, where ``s_i`` is its standard deviation (normalised by D - 1)
       and the mean is over **all** images, training and test;
    3. ZCA whitening: ``W = Z_train' Z_train / N`` with N the number of **all** images (60,000
       for CIFAR-10, not 50,000: MatConvNet's divisor, which matters only through the floor),
       eigenvalues ``d`` of ``W``, ``en = sqrt(mean(d))``; every image becomes
       ``V diag(en / max(sqrt(d), 10)) V' z``.

    Statistics are accumulated in float64 and the eigendecomposition is done in float64 (MATLAB
    does it in single), so results agree with MatConvNet's to single precision, not bit for bit.

    Parameters
    ----------
    images : ndarray, shape (H, W, C, N)
        Images on the 0..255 scale (uint8 or float).
    sets : ndarray of int, shape (N,)
        1 marks training images, whose statistics are used; other values (3 = test) are only
        transformed.
    whiten : bool, default True
        Apply step 3.
    contrast_normalization : bool, default True
        Apply step 2.

    Returns
    -------
    data : ndarray of float32, shape (H, W, C, N)
        Fortran-ordered preprocessed images (a new array).

    Raises
    ------
    ValueError
        If ``images`` is not 4-D, ``sets`` does not have one entry per image, or there are no
        training images.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.datasets import cifar10
    >>> images = np.random.default_rng(0).integers(0, 256, (4, 4, 3, 10), dtype=np.uint8)
    >>> data = cifar10.preprocess(images, np.array([1] * 8 + [3] * 2))
    >>> data.shape, data.dtype
    ((4, 4, 3, 10), dtype('float32'))
    """
    images, train = training_mask(images, sets)
    n = images.shape[3]
    data = np.array(images, dtype=np.float32, order="F")
    z = data.T.reshape(n, -1)  # a view: one row per image

    total = np.zeros(z.shape[1])
    for rows in _chunks(n):
        total += z[rows][train[rows]].sum(axis=0, dtype=np.float64)
    z -= (total / np.count_nonzero(train)).astype(np.float32)

    if contrast_normalization:
        stds = np.empty(n)
        for rows in _chunks(n):
            block = z[rows].astype(np.float64)
            block -= block.mean(axis=1, keepdims=True)
            stds[rows] = block.std(axis=1, ddof=1)
            z[rows] = block
        z *= (stds.mean() / np.maximum(stds, _CONTRAST_FLOOR)).astype(np.float32)[:, None]

    if whiten:
        matrix = _zca_matrix(z, train, n, _WHITENING_FLOOR).astype(np.float32)
        for rows in _chunks(n):
            z[rows] = z[rows] @ matrix  # the matrix is symmetric
    return data


def _cache_path(cache_dir, whiten, contrast_normalization):
    name = f"imdb-v{_CACHE_VERSION}-whiten{int(whiten)}-contrast{int(contrast_normalization)}.npz"
    return os.path.join(os.fspath(cache_dir), name)


def _imdb(data, labels, sets, classes):
    return {
        "images": {"data": data, "labels": labels, "set": sets},
        "meta": {"sets": ["train", "val", "test"], "classes": list(classes)},
    }


def get_imdb(data_dir, whiten=True, contrast_normalization=True, cache_dir=None, url=URL, md5=MD5,
             progress=True):
    """Build (or load from its cache) the preprocessed CIFAR-10 imdb, as ``getCifarImdb``.

    ``imdb = get_imdb('data/cifar')`` reads ``data/cifar/cifar-10-python.tar.gz`` (downloading it
    if missing), applies :func:`preprocess` and saves the result as
    ``imdb-v1-whiten<0|1>-contrast<0|1>.npz`` in ``cache_dir``; later calls with the same options
    load that file instead. Delete it to rebuild.

    Parameters
    ----------
    data_dir : str or path-like
        Folder holding (or to receive) the archive.
    whiten : bool, default True
        ZCA-whiten the images.
    contrast_normalization : bool, default True
        Contrast-normalise the images.
    cache_dir : str or path-like or None, default None
        Where the imdb is cached; ``None`` means ``data_dir``.
    url, md5, progress
        Passed to :func:`download`.

    Returns
    -------
    imdb : dict
        ``imdb['images']``: ``'data'`` (32, 32, 3, 60000) float32 Fortran-ordered, ``'labels'``
        (60000,) float32 in 1..10, ``'set'`` (60000,) uint8 (1 train, 3 test).
        ``imdb['meta']``: ``'sets'`` = ``['train', 'val', 'test']``, ``'classes'`` = class names.

    Raises
    ------
    RuntimeError
        If the archive is missing and cannot be downloaded.
    ValueError
        If the archive does not hold the python version of CIFAR-10.
    OSError
        If the cache cannot be written (a full disk): the message names the file; nothing partial
        is left.

    Examples
    --------
    >>> from cnnx.datasets import cifar10
    >>> imdb = cifar10.get_imdb("data/cifar")  # doctest: +SKIP
    >>> imdb["images"]["data"].shape, imdb["images"]["set"][-1]  # doctest: +SKIP
    ((32, 32, 3, 60000), np.uint8(3))
    """
    cache_dir = data_dir if cache_dir is None else cache_dir
    cache = _cache_path(cache_dir, whiten, contrast_normalization)
    if os.path.exists(cache):
        with np.load(cache, allow_pickle=False) as saved:
            return _imdb(saved["data"], saved["labels"], saved["set"], saved["classes"].tolist())
    images, labels, sets, classes = load(data_dir, url=url, md5=md5, progress=progress)
    data = preprocess(images, sets, whiten=whiten, contrast_normalization=contrast_normalization)
    os.makedirs(os.fspath(cache_dir), exist_ok=True)
    with atomic_open(cache, "wb", "cifar10.get_imdb", "the preprocessed-data cache") as out:
        np.savez(out, data=data, labels=labels, set=sets, classes=np.array(classes))
    return _imdb(data, labels, sets, classes)


def get_batch(imdb, batch, rng=None):
    """Return the images and labels of a batch, flipped left-right with probability 1/2.

    ``images, labels = get_batch(imdb, batch)`` is ``cnn_cifar``'s batch function: the **whole
    batch** is mirrored horizontally (along W) when a uniform draw exceeds 0.5. Like MatConvNet's,
    it does not know whether the batch is for training or validation, so validation batches are
    flipped too (the networks are near flip-invariant, so the error barely changes).

    Parameters
    ----------
    imdb : dict
        As returned by :func:`get_imdb`.
    batch : array of int
        Indices (0-based) of the images.
    rng : numpy.random.Generator or None, default None
        Source of the draw; ``None`` uses NumPy's global generator, which the trainer reseeds at
        each epoch (MatConvNet's ``rng(epoch + randomSeed)``), so runs and resumed runs repeat.

    Returns
    -------
    images : ndarray of float32, shape (H, W, C, len(batch))
        Fortran-ordered.
    labels : ndarray of float32, shape (len(batch),)

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.datasets import cifar10
    >>> data = np.asfortranarray(np.arange(8, dtype=np.float32).reshape(1, 2, 1, 4))
    >>> imdb = {"images": {"data": data, "labels": np.arange(1, 5, dtype=np.float32)}}
    >>> images, labels = cifar10.get_batch(imdb, [3, 0], rng=np.random.default_rng(1))
    >>> images[0, :, 0, :], labels
    (array([[7., 4.],
           [3., 0.]], dtype=float32), array([4., 1.], dtype=float32))
    """
    draw = np.random.random() if rng is None else rng.random()
    images = imdb["images"]["data"][:, :, :, batch]
    if draw > 0.5:
        images = images[:, ::-1]
    return np.asfortranarray(images), imdb["images"]["labels"][batch]
