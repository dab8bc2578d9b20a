"""MNIST as MatConvNet's ``cnn_mnist`` example prepares it, and a 5,000-digit sample that ships with cnnx.

The full data set is the four IDX files of the MNIST database (60,000 training and 10,000 test
digits), downloaded with pooch into the data folder (``data/mnist`` in the example) and checked
against their known SHA-256 when they are missing. :func:`get_imdb` turns them into MatConvNet's
imdb as ``getMnistImdb`` does: 28x28x1xN float32 images in (H, W, C, N) order on the 0..255 scale
minus the mean training image, labels 1..10 (digit d is class d + 1), set 1 for the training
images and 3 for the test images (MatConvNet validates on the test set).

Without a network, ``get_imdb(sample=True)`` (and :func:`load_sample`) gives the same imdb for a
sample of 5,000 MNIST digits that is part of the package (``cnnx/datasets/data/mnist_5k.csv.gz``,
1.1 MB): 4,000 training and 1,000 held-out test digits.

MNIST is by Yann LeCun, Corinna Cortes and Christopher J. C. Burges, under the Creative Commons
Attribution-Share Alike 3.0 license (CC BY-SA 3.0); so is the sample (see the README beside it).
"""
import gzip
import hashlib
import importlib.resources
import os
import zlib

import numpy as np

from ._download import RETRIES, fetch
from ._imdb import training_mask

#: The four files of MNIST, as downloaded: training images and labels, test images and labels.
FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
#: SHA-256 of each of them.
SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
#: Where the files are downloaded from, tried in order (PyTorch's and TensorFlow's copies of
#: yann.lecun.com/exdb/mnist, which MatConvNet used and which no longer serves them reliably).
MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
           "https://storage.googleapis.com/cvdf-datasets/mnist/")
#: The shipped sample, in the package's ``data`` folder, and its SHA-256.
SAMPLE = "mnist_5k.csv.gz"
SAMPLE_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
#: Class names in label order: label k is the digit k - 1.
CLASSES = [str(digit) for digit in range(10)]

_SIDE = 28
_SAMPLE_PER_CLASS = 500
_SAMPLE_TRAIN_PER_CLASS = 400
# IDX type codes: https://yann.lecun.com/exdb/mnist/ (the data are big-endian).
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path):
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as stream:
            return stream.read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise ValueError(f"read_idx: cannot read {path} ({error}); delete it to download it "
                         "again") from error


def read_idx(path):
    """Read an IDX file (the format of the MNIST files), gzipped or not.

    An IDX file is two zero bytes, a type code (0x08 unsigned byte, 0x09 signed byte, 0x0B
    int16, 0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions D, D big-endian
    uint32 sizes, and then the values, big-endian, last dimension fastest. A name ending in
    ``.gz`` is read through gzip.

    Parameters
    ----------
    path : str or path-like
        The file, e.g. ``train-images-idx3-ubyte.gz`` or ``train-images-idx3-ubyte``.

    Returns
    -------
    values : ndarray
        C-ordered, of the header's shape (``(60000, 28, 28)`` for MNIST's training images) and
        dtype, in native byte order.

    Raises
    ------
    ValueError
        If the file is not an IDX file, has an unknown type code, holds fewer or more bytes than
        its header says, or is a damaged gzip file; the message names the file.

    Examples
    --------
    >>> import os, tempfile
    >>> from cnnx.datasets import mnist
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny-idx2-ubyte")
    >>> with open(path, "wb") as f:
    ...     _ = f.write(bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6]))
    >>> mnist.read_idx(path)
    array([[1, 2, 3],
           [4, 5, 6]], dtype=uint8)
    """
    path = os.fspath(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"read_idx: {path} is not an IDX file (it must start with two zero "
                         f"bytes, a type code and a dimension count; it starts with {raw[:4]!r})")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_TYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_TYPES)
        raise ValueError(f"read_idx: {path} has the unknown IDX type code 0x{code:02X} "
                         f"(known: {known})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"read_idx: {path} is truncated: its header is cut off after "
                         f"{len(raw)} bytes; delete it to download it again")
    shape = tuple(int(size) for size in np.frombuffer(raw, ">u4", ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        how = "is truncated" if len(raw) - header < expected else "is too long"
        raise ValueError(f"read_idx: {path} {how}: its header gives {'x'.join(map(str, shape))} "
                         f"values ({expected} bytes) but it holds {len(raw) - header} bytes of "
                         "data; delete it to download it again")
    values = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return values.astype(dtype.newbyteorder("="))


def _present(data_dir, name):
    """The file ``name`` (gzipped, as downloaded) or its gunzipped version, as MatConvNet keeps
    it; None when neither is there."""
    for candidate in (name, name[:-len(".gz")]):
        path = os.path.join(data_dir, candidate)
        if os.path.isfile(path):
            return path
    return None


def download(data_dir, mirrors=MIRRORS, sha256=SHA256, timeout=60.0, progress=True,
             retries=RETRIES):
    """Download the MNIST files that are missing from ``data_dir`` with pooch, checking their SHA-256.

    Each file is written to a temporary name in ``data_dir`` and renamed to its own name only once
    it is complete and its checksum matches; on any failure the partial file is removed. A
    transfer that breaks off or arrives damaged is tried again ``retries`` times, then the next
    mirror is tried; a mirror that cannot be reached is passed over at once. Files already there
    (gzipped, or gunzipped as MatConvNet keeps them) are not downloaded again.

    Parameters
    ----------
    data_dir : str or path-like
        Folder of the four files (created if needed).
    mirrors : sequence of str, default MIRRORS
        Base addresses to try in order; a file's address is the base followed by its name.
    sha256 : dict, default SHA256
        Expected SHA-256 (hexadecimal) of each of the four files in :data:`FILES`.
    timeout : float, default 60
        Seconds to wait for a server before giving up.
    progress : bool, default True
        Show a progress bar (tqdm) per file on stderr, and why a download is tried again.
    retries : int, default 2
        Further attempts at a mirror after a broken transfer or a wrong checksum.

    Returns
    -------
    paths : list of str
        The four files, in the order of :data:`FILES`.

    Raises
    ------
    RuntimeError
        If a file cannot be downloaded from any mirror, or its checksum does not match; the
        message names the file and says where to put manually downloaded files.
    OSError
        If a file cannot be written (a full disk); the message names it.

    Examples
    --------
    >>> from cnnx.datasets import mnist
    >>> mnist.download("data/mnist")  # doctest: +SKIP
    ['data/mnist/train-images-idx3-ubyte.gz', 'data/mnist/train-labels-idx1-ubyte.gz', ...]
    """
    data_dir = os.fspath(data_dir)
    os.makedirs(data_dir, exist_ok=True)
    where = (f"put MNIST's four files ({', '.join(FILES)}) in {os.path.abspath(data_dir)}")
    paths = []
    for name in FILES:
        path = _present(data_dir, name)
        if path is None:
            fetch([base + name for base in mirrors], data_dir, name,
                  f"sha256:{sha256[name].lower()}", "mnist", "MNIST's " + name, where,
                  timeout=timeout, progress=progress, retries=retries)
            path = os.path.join(data_dir, name)
        paths.append(path)
    return paths


def _images(values, path):
    if values.dtype != np.uint8 or values.ndim != 3 or values.shape[1:] != (_SIDE, _SIDE):
        raise ValueError(f"mnist: {path} holds {values.dtype} values of shape {values.shape}, "
                         f"expected uint8 images of {_SIDE}x{_SIDE}")
    # images[h, w, 0, n] = values[n, h, w]: upright, as getMnistImdb's permute(..., [2 1 3]).
    return np.ascontiguousarray(values.transpose(0, 2, 1)).T[:, :, None, :]


def _labels(values, path, count, images_path):
    if values.dtype != np.uint8 or values.ndim != 1:
        raise ValueError(f"mnist: {path} holds {values.dtype} values of shape {values.shape}, "
                         "expected one uint8 label per image")
    if values.size != count:
        raise ValueError(f"mnist: {path} has {values.size} labels for the {count} images of "
                         f"{images_path}")
    if values.max(initial=0) > 9:
        raise ValueError(f"mnist: {path} has a label {values.max()}, expected digits 0-9")
    return values.astype(np.float32) + 1


def load(data_dir, mirrors=MIRRORS, sha256=SHA256, timeout=60.0, progress=True, retries=RETRIES):
    """Read the raw MNIST images, downloading the files that are missing.

    Parameters
    ----------
    data_dir : str or path-like
        Folder of the four files of :data:`FILES` (downloaded there if missing; files already
        there, gzipped or not, are used as they are).
    mirrors, sha256, timeout, progress, retries
        Passed to :func:`download`.

    Returns
    -------
    images : ndarray of uint8, shape (28, 28, 1, 70000)
        Fortran-ordered (H, W, C, N), upright; the 60,000 training images first, then the test
        images.
    labels : ndarray of float32, shape (70000,)
        Classes 1..10 (digit d is class d + 1).
    sets : ndarray of uint8, shape (70000,)
        1 for training images, 3 for test images.
    classes : list of str
        ``['0', '1', ..., '9']``, the digit of each class.

    Raises
    ------
    RuntimeError
        If a file is missing and cannot be downloaded.
    ValueError
        If a file is damaged, is not an IDX file of MNIST's shapes, or the labels do not match the
        images; the message names the file.

    Examples
    --------
    >>> from cnnx.datasets import mnist
    >>> images, labels, sets, classes = mnist.load("data/mnist")  # doctest: +SKIP
    >>> images.shape, labels[:3], classes[0]  # doctest: +SKIP
    ((28, 28, 1, 70000), array([6., 1., 5.], dtype=float32), '0')
    """
    paths = download(data_dir, mirrors=mirrors, sha256=sha256, timeout=timeout,
                     progress=progress, retries=retries)
    images, labels, sets = [], [], []
    for (images_path, labels_path), set_id in zip((paths[:2], paths[2:]), (1, 3)):
        part = _images(read_idx(images_path), images_path)
        images.append(part)
        labels.append(_labels(read_idx(labels_path), labels_path, part.shape[3], images_path))
        sets.append(np.full(part.shape[3], set_id, dtype=np.uint8))
    return (np.concatenate(images, axis=3), np.concatenate(labels), np.concatenate(sets),
            list(CLASSES))


def sample_path():
    """Path of the MNIST sample that ships with cnnx (``mnist_5k.csv.gz``).

    Returns
    -------
    path : pathlib.Path or importlib.resources.abc.Traversable
        The file in the installed package's ``cnnx/datasets/data`` folder.

    Examples
    --------
    >>> from cnnx.datasets import mnist
    >>> mnist.sample_path().name
    'mnist_5k.csv.gz'
    """
    return importlib.resources.files(__package__).joinpath("data", SAMPLE)


def load_sample():
    """Read the 5,000-digit MNIST sample that ships with cnnx, split into training and test images.

    The file holds 500 images of each digit, sorted by digit. They are returned interleaved by
    class (image ``10 * i + d`` is the ``i``-th image of digit ``d`` in the file), the first 400
    of each class as the training set (4,000 images, set 1) and the last 100 of each class as the
    test set (1,000 images, set 3, MatConvNet's validation set): the split is fixed, and the first
    ``N`` images of either set hold every digit about equally often.

    Returns
    -------
    images : ndarray of uint8, shape (28, 28, 1, 5000)
        Fortran-ordered (H, W, C, N), upright; the training images first.
    labels : ndarray of float32, shape (5000,)
        Classes 1..10 (digit d is class d + 1).
    sets : ndarray of uint8, shape (5000,)
        1 for the 4,000 training images, 3 for the 1,000 test images.
    classes : list of str
        ``['0', '1', ..., '9']``.

    Raises
    ------
    ValueError
        If the shipped file is damaged (its SHA-256 does not match); reinstalling cnnx mends it.

    Examples
    --------
    >>> from cnnx.datasets import mnist
    >>> images, labels, sets, classes = mnist.load_sample()
    >>> images.shape, labels[:12]
    ((28, 28, 1, 5000), array([ 1.,  2.,  3.,  4.,  5.,  6.,  7.,  8.,  9., 10.,  1.,  2.],
          dtype=float32))
    >>> int((sets == 1).sum()), int((sets == 3).sum())
    (4000, 1000)
    """
    path = sample_path()
    packed = path.read_bytes()
    digest = hashlib.sha256(packed).hexdigest()
    if digest != SAMPLE_SHA256:
        raise ValueError(f"mnist: the sample {path} is damaged (SHA-256 {digest}, expected "
                         f"{SAMPLE_SHA256}); reinstall cnnx")
    rows = np.loadtxt(gzip.decompress(packed).decode("ascii").splitlines(), delimiter=",",
                      dtype=np.uint8)
    digits = rows[:, -1]
    # Stable within each class: row i of digit d (in file order) goes to position 10 * i + d.
    order = np.argsort(digits, kind="stable").reshape(10, _SAMPLE_PER_CLASS).T.ravel()
    rows = rows[order]
    train = np.arange(len(rows)) < 10 * _SAMPLE_TRAIN_PER_CLASS
    images = _images(rows[:, :-1].reshape(-1, _SIDE, _SIDE), path)
    labels = rows[:, -1].astype(np.float32) + 1
    sets = np.where(train, 1, 3).astype(np.uint8)
    return images, labels, sets, list(CLASSES)


def preprocess(images, sets):
    """MatConvNet's MNIST preprocessing: the images in float32, minus the mean training image.

    ``data, data_mean = preprocess(images, sets)`` is ``getMnistImdb``'s
    ``data = single(images); dataMean = mean(data(:,:,:,set == 1), 4); data = data - dataMean``,
    on the 0..255 scale. The mean is accumulated in float64.

    Parameters
    ----------
    images : ndarray, shape (H, W, C, N)
        Images on the 0..255 scale (uint8 or float).
    sets : ndarray of int, shape (N,)
        1 marks the training images, whose mean is subtracted from every image.

    Returns
    -------
    data : ndarray of float32, shape (H, W, C, N)
        Fortran-ordered (a new array).
    data_mean : ndarray of float32, shape (H, W, C)
        The mean training image that was subtracted: subtract it from any new image too.

    Raises
    ------
    ValueError
        If ``images`` is not 4-D, ``sets`` does not have one entry per image, or no image is a
        training image.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.datasets import mnist
    >>> images = np.array([0, 10, 50], dtype=np.uint8).reshape(1, 1, 1, 3)
    >>> data, data_mean = mnist.preprocess(images, [1, 1, 3])
    >>> data.ravel(), data_mean.ravel()
    (array([-5.,  5., 45.], dtype=float32), array([5.], dtype=float32))
    """
    images, train = training_mask(images, sets)
    data = np.array(images, dtype=np.float32, order="F")
    data_mean = data[:, :, :, train].mean(axis=3, dtype=np.float64).astype(np.float32)
    data -= data_mean[:, :, :, None]
    return data, np.asfortranarray(data_mean)


def get_imdb(data_dir="data/mnist", sample=False, mirrors=MIRRORS, sha256=SHA256, timeout=60.0,
             progress=True, retries=RETRIES):
    """Build MatConvNet's MNIST imdb (``getMnistImdb``), from MNIST or from the shipped sample.

    ``imdb = get_imdb('data/mnist')`` reads the four MNIST files in ``data/mnist`` (downloading
    the missing ones) and applies :func:`preprocess`; ``get_imdb(sample=True)`` does the same
    with :func:`load_sample` and needs no file and no network.

    Parameters
    ----------
    data_dir : str or path-like, default 'data/mnist'
        Folder holding (or to receive) the four files; unused with ``sample``.
    sample : bool, default False
        Use the 5,000-digit sample that ships with cnnx (4,000 training, 1,000 test images).
    mirrors, sha256, timeout, progress, retries
        Passed to :func:`download`.

    Returns
    -------
    imdb : dict
        ``imdb['images']``: ``'data'`` (28, 28, 1, N) float32 Fortran-ordered, ``'data_mean'``
        (28, 28, 1) float32, ``'labels'`` (N,) float32 in 1..10, ``'set'`` (N,) uint8 (1 train,
        3 test). ``imdb['meta']``: ``'sets'`` = ``['train', 'val', 'test']``, ``'classes'`` =
        ``['0', ..., '9']``. N is 70,000 for MNIST, 5,000 for the sample.

    Raises
    ------
    RuntimeError
        If an MNIST file is missing and cannot be downloaded.
    ValueError
        If a file is damaged or not MNIST's.

    Examples
    --------
    >>> from cnnx.datasets import mnist
    >>> imdb = mnist.get_imdb(sample=True)
    >>> imdb["images"]["data"].shape, imdb["meta"]["classes"][:3]
    ((28, 28, 1, 5000), ['0', '1', '2'])
    >>> train = imdb["images"]["data"][..., imdb["images"]["set"] == 1]
    >>> bool(abs(train.mean()) < 1e-4)  # the training mean is removed
    True
    """
    if sample:
        images, labels, sets, classes = load_sample()
    else:
        images, labels, sets, classes = load(data_dir, mirrors=mirrors, sha256=sha256,
                                             timeout=timeout, progress=progress, retries=retries)
    data, data_mean = preprocess(images, sets)
    return {
        "images": {"data": data, "data_mean": data_mean, "labels": labels, "set": sets},
        "meta": {"sets": ["train", "val", "test"], "classes": list(classes)},
    }


def get_batch(imdb, batch):
    """Return the images and labels of a batch, as ``cnn_mnist``'s ``getSimpleNNBatch``.

    No augmentation: ``images = imdb.images.data(:,:,:,batch)``, ``labels =
    imdb.images.labels(batch)``.

    Parameters
    ----------
    imdb : dict
        As returned by :func:`get_imdb`.
    batch : array of int
        Indices (0-based) of the images.

    Returns
    -------
    images : ndarray of float32, shape (28, 28, 1, len(batch))
        Fortran-ordered.
    labels : ndarray of float32, shape (len(batch),)

    Examples
    --------
    >>> from cnnx.datasets import mnist
    >>> imdb = mnist.get_imdb(sample=True)
    >>> images, labels = mnist.get_batch(imdb, [0, 1, 4003])
    >>> images.shape, labels
    ((28, 28, 1, 3), array([1., 2., 4.], dtype=float32))
    """
    images = imdb["images"]["data"][:, :, :, batch]
    return np.asfortranarray(images), imdb["images"]["labels"][batch]
