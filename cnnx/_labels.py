"""Class labels of the categorical losses (``vl_nnsoftmaxloss``, ``vl_nnloss``, the trainer):
one parser, one set of accepted shapes, one set of messages. The trainer checks a batch's labels
with :func:`batch_labels` when ``get_batch`` returns them and reads them with :func:`parse_labels`
against the predictions."""
import numpy as np


def parse_labels(fname, c, height, width, classes, images, *, weights=False, check_values=True):
    """Check the labels ``c`` of an H x W x classes x N score array; return them as float64.

    Accepted forms (MatConvNet's):

    - N elements, of any shape: one label per image, used at every pixel;
    - H x W x 1 x N (or H x W x 1, H x W when N = 1; trailing singleton dimensions may be
      dropped, as MATLAB does): one label per pixel;
    - with ``weights=True`` (``vl_nnsoftmaxloss``) also H x W x 2 x N and 1 x 1 x 2 x N, whose
      second channel holds a weight per pixel (replicated over H x W for 1 x 1 x 2 x N).

    Labels are whole numbers in 0..classes: 1..classes are classes, 0 marks an instance to
    ignore. Any real dtype holding them is accepted (int, uint, float).

    Parameters
    ----------
    fname : str
        Block name that starts every message, e.g. ``"vl_nnloss"``.
    c : array_like
        The labels.
    height, width, classes, images : int
        The scores' H, W, C and N.
    weights : bool
        Whether the weighted forms (a second channel) are accepted.
    check_values : bool
        Whether to check the label values here (False when a kernel checks them on the way;
        it then reports bad ones with :func:`check_label_values`).

    Returns
    -------
    labels : ndarray, float64, Fortran order, shape (P, D, N)
        P = 1 (one label per image, or 1 x 1 x D x N) or H*W (pixels in Fortran order); D = 1,
        or 2 when a weight channel was given: ``labels[:, 0, :]`` are the classes,
        ``labels[:, 1, :]`` the weights.

    Raises
    ------
    TypeError
        If ``c`` is not real numeric (bool, complex, strings, objects).
    ValueError
        If ``c`` has none of the shapes above or (``check_values``) a label is not a whole
        number in 0..classes.
    """
    arr = _real_array(fname, c, classes)
    if arr.size == images:
        dims = (1, 1, images)
    else:
        shape = arr.shape + (1,) * (4 - arr.ndim) if 2 <= arr.ndim <= 4 else None
        fits = shape is not None and shape[3] == images and (
            (shape[:3] == (height, width, 1)) or (weights and shape[2] == 2 and shape[:2] in ((height, width), (1, 1))))
        if not fits:
            forms = "N labels (one per image) or an H x W x 1 x N array"
            if weights:
                forms = ("N labels (one per image), an H x W x 1 x N array, or H x W x 2 x N or "
                         "1 x 1 x 2 x N with weights in the second channel")
            raise ValueError(f"{fname}: labels C have shape {arr.shape} but X is {height} x {width} x "
                             f"{classes} x {images}; give {forms}")
        dims = (shape[0] * shape[1], shape[2], images)
    labels = np.asfortranarray(arr, dtype=np.float64).reshape(dims, order="F")
    if check_values:
        check_label_values(fname, labels, classes)
    return labels


def _real_array(fname, c, classes):
    """``c`` as an array of real numbers, else the TypeError (or, for Python ints beyond 64 bits,
    the ValueError of a label out of range) every label check gives."""
    arr = np.asarray(c)
    if arr.dtype == object and arr.size and all(isinstance(v, int) and not isinstance(v, bool) for v in arr.flat):
        raise ValueError(_value_message(fname, max(arr.flat, key=abs), classes))
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{fname}: labels C must be real numbers, got a {arr.dtype} array")
    return arr


def batch_labels(fname, c, images, classes=False):
    """What can be told of a batch's labels before the scores exist (the trainer's check of what
    ``get_batch`` returns): real numbers, in one of :func:`parse_labels`' forms as far as N
    decides it (N elements, or an array of at most 4 dimensions whose 4th is N; for N = 1 any
    2-D or 3-D array), and finite. With ``classes=True`` they must also be class labels: whole
    numbers of at least 0 (the number of classes is the loss's to check). Returns the array.
    """
    arr = _real_array(fname, c, None)
    fits = arr.size == images or arr.ndim == 4 and arr.shape[3] == images or images == 1 and 2 <= arr.ndim <= 3
    if not fits:
        raise ValueError(f"{fname}: labels C have shape {arr.shape} for {images} images; give N labels (one per "
                         "image) or an H x W x 1|2 x N array")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{fname}: labels C must be finite, got NaN or infinity")
    if classes:
        flat = arr.reshape(-1) if arr.size == images else _as4d(arr)[:, :, 0, :].reshape(-1)
        bad = flat[(flat < 0) | (flat != np.floor(flat))]
        if bad.size:
            raise ValueError(_value_message(fname, bad[0].item(), None))
    return arr


def _as4d(arr):
    return arr.reshape(arr.shape + (1,) * (4 - arr.ndim))


def check_label_values(fname, labels, classes):
    """Raise ValueError naming the first label (in Fortran order) of ``labels`` (as returned by
    :func:`parse_labels`) that is not a whole number in 0..classes."""
    values = labels[:, 0, :]
    valid = (values >= 0) & (values <= classes) & (values == np.floor(values))
    if not valid.all():
        raise ValueError(_value_message(fname, values.ravel(order="F")[~valid.ravel(order="F")][0], classes))


def _value_message(fname, value, classes):
    if isinstance(value, float) or isinstance(value, np.floating):
        value = float(value)
        if value == value and abs(value) != float("inf") and value == int(value):
            value = int(value)  # a whole number out of range: shown as one
    if classes is None:
        return f"{fname}: labels C must be whole numbers of at least 0 (0 ignores an instance), got {value!r}"
    return (f"{fname}: labels C must be whole numbers in 0..{classes} (1..C are the C = {classes} "
            f"classes, 0 ignores an instance), got {value!r}")
