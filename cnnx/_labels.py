"""Class labels of the categorical losses (``vl_nnsoftmaxloss``, ``vl_nnloss``, the trainer):
one parser, one set of accepted shapes, one set of messages."""
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
    arr = np.asarray(c)
    if arr.dtype == object and arr.size and all(isinstance(v, int) and not isinstance(v, bool) for v in arr.flat):
        # Python ints beyond 64 bits: numbers, out of range
        raise ValueError(_value_message(fname, max(arr.flat, key=abs), classes))
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{fname}: labels C must be real numbers, got a {arr.dtype} array")
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
    return (f"{fname}: labels C must be whole numbers in 0..{classes} (1..C are the C = {classes} "
            f"classes, 0 ignores an instance), got {value!r}")
