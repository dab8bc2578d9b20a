"""Labels of the losses (``vl_nnsoftmaxloss``, ``vl_nnloss``, the trainer): one parser, one set
of accepted shapes, one set of messages. The trainer checks a batch's labels
with :func:`batch_labels` when ``get_batch`` returns them and reads them with :func:`parse_labels`
against the predictions."""
import numpy as np


def parse_labels(fname, c, height, width, classes, images, *, weights=False, check_values=True,
                 attributes=False):
    """Check the labels ``c`` of an H x W x classes x N score array; return them as float64.

    Accepted forms (MatConvNet's):

    - N elements, of any shape: one label per image, used at every pixel;
    - H x W x 1 x N (or H x W x 1, H x W when N = 1; trailing singleton dimensions may be
      dropped, as MATLAB does): one label per pixel;
    - with ``weights=True`` (``vl_nnsoftmaxloss``) also H x W x 2 x N and 1 x 1 x 2 x N, whose
      second channel holds a weight per pixel (replicated over H x W for 1 x 1 x 2 x N);
    - with ``attributes=True`` (``vl_nnloss``'s binary losses and L2, one label per score) instead
      H x W x D x N, D = ``classes``, or N elements when D = 1.

    Class labels are whole numbers of at most ``classes``: 1..classes are classes, 0 or less
    marks an instance to ignore (MatConvNet's ``c > 0``). Any real dtype holding them is accepted
    (int, uint, float). Attribute labels are not checked here.

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
    attributes : bool
        Whether ``c`` holds one label per score (H x W x D x N) rather than one per pixel.

    Returns
    -------
    labels : ndarray, float64, Fortran order, shape (P, D, N)
        P = 1 (one label per image, or 1 x 1 x D x N) or H*W (pixels in Fortran order); D = 1,
        or 2 when a weight channel was given: ``labels[:, 0, :]`` are the classes,
        ``labels[:, 1, :]`` the weights; D = ``classes`` for attribute labels.

    Raises
    ------
    TypeError
        If ``c`` is not real numeric (bool, complex, strings, objects).
    ValueError
        If ``c`` has none of the shapes above or (``check_values``) a class label is not a whole
        number of at most ``classes``.
    """
    arr = _real_array(fname, c, classes, attributes)
    depth = classes if attributes else 1
    if arr.size == images and depth == 1:
        dims = (1, 1, images)
    else:
        shape = arr.shape + (1,) * (4 - arr.ndim) if 2 <= arr.ndim <= 4 else None
        fits = shape is not None and shape[3] == images and (
            shape[:3] == (height, width, depth)
            or weights and shape[2] == 2 and shape[:2] in ((height, width), (1, 1)))
        if not fits:
            forms = "N labels (one per image) or an H x W x 1 x N array"
            if weights:
                forms = ("N labels (one per image), an H x W x 1 x N array, or H x W x 2 x N or "
                         "1 x 1 x 2 x N with weights in the second channel")
            if attributes:
                forms = "an H x W x D x N array (one label per score), or N labels (one per image) when D = 1"
            raise ValueError(f"{fname}: labels C have shape {arr.shape} but X is {height} x {width} x "
                             f"{classes} x {images}; give {forms}")
        dims = (shape[0] * shape[1], shape[2], images)
    labels = np.asfortranarray(arr, dtype=np.float64).reshape(dims, order="F")
    if check_values and not attributes:
        check_label_values(fname, labels, classes)
    return labels


# Labels of at most this are fine for any number of classes that fits memory; beyond it, a Python int
# (an object array) cannot be told from a wrong one once converted to float64.
_LARGEST_LABEL = 2**63 - 1


def _real_array(fname, c, classes, attributes=False):
    """``c`` as an array of real numbers, else the TypeError every label check gives. Python ints
    beyond 64 bits (an object array) are, as class labels, a label out of range when positive (the
    ValueError of a bad label) and an ignored label (-1) when negative; as ``attributes`` (scores'
    labels or targets), numbers (a ValueError beyond double's range)."""
    arr = np.asarray(c)
    if arr.dtype == object and arr.size and all(isinstance(v, int) and not isinstance(v, bool) for v in arr.flat):
        if attributes:
            try:
                return np.array([float(value) for value in arr.flat]).reshape(arr.shape)
            except OverflowError:
                raise ValueError(f"{fname}: labels C must fit a double, got {max(arr.flat, key=abs)!r}") from None
        limit = _LARGEST_LABEL if classes is None else classes
        for value in arr.flat:
            if value > limit:
                raise ValueError(_value_message(fname, value, classes))
        return np.array([max(value, -1) for value in arr.flat], dtype=np.int64).reshape(arr.shape)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{fname}: labels C must be real numbers, got a {arr.dtype} array")
    return arr


def batch_labels(fname, c, images, classes=False):
    """What can be told of a batch's labels before the scores exist (the trainer's check of what
    ``get_batch`` returns): real numbers, in one of :func:`parse_labels`' forms as far as N
    decides it (N elements, or an array of at most 4 dimensions whose 4th is N; for N = 1 any
    2-D or 3-D array), and finite. With ``classes=True`` they must also be class labels: whole
    numbers (below 2^63; 0 or less ignores an instance; the number of classes is the loss's to
    check). Returns the array.
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
        bad = flat[(flat >= 2.0**63) | (flat != np.floor(flat))]
        if bad.size:
            raise ValueError(_value_message(fname, bad[0].item(), None))
    return arr


def _as4d(arr):
    return arr.reshape(arr.shape + (1,) * (4 - arr.ndim))


def check_label_values(fname, labels, classes):
    """Raise ValueError naming the first label (in Fortran order) of ``labels`` (as returned by
    :func:`parse_labels`) that is not a whole number of at most ``classes``."""
    values = labels[:, 0, :]
    valid = (values > -np.inf) & (values <= classes) & (values == np.floor(values))
    if not valid.all():
        raise ValueError(_value_message(fname, values.ravel(order="F")[~valid.ravel(order="F")][0], classes))


def _value_message(fname, value, classes):
    if isinstance(value, float) or isinstance(value, np.floating):
        value = _shown(value)  # a whole number out of range: shown as one
    if classes is None:
        return f"{fname}: labels C must be whole numbers below 2^63 (0 or less ignores an instance), got {value!r}"
    return (f"{fname}: labels C must be whole numbers of at most {classes} (1..C are the C = {classes} "
            f"classes, 0 or less ignores an instance), got {value!r}")


def check_binary_labels(fname, labels, loss):
    """Raise ValueError naming the first label (in Fortran order) of ``labels`` (as returned by
    :func:`parse_labels` with ``attributes=True``) that is not +1, -1 or 0 (0 ignores an instance)."""
    flat = labels.ravel(order="F")
    bad = flat[(flat != 1) & (flat != -1) & (flat != 0)]
    if bad.size:
        raise ValueError(f"{fname}: labels C of Loss '{loss}' must be +1 or -1 (0 ignores an instance), "
                         f"got {_shown(bad[0])!r}")


def _shown(value):
    """A label as messages show it: a whole float as an int."""
    value = float(value)
    if value == value and abs(value) != float("inf") and value == int(value):
        return int(value)
    return value
