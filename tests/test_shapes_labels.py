"""The shared window output size (cnnx._shapes) and label parser (cnnx._labels)."""
import re

import numpy as np
import pytest

from cnnx._labels import batch_labels, check_label_values, parse_labels
from cnnx._shapes import window_output_size


def reference_size(n, f, pad0, pad1, stride, dilate):
    """Count the window positions that fit, one by one."""
    extent = (f - 1) * dilate + 1
    return sum(1 for start in range(0, n + pad0 + pad1, stride) if start + extent <= n + pad0 + pad1)


@pytest.mark.parametrize("h, w", [(1, 1), (5, 7), (8, 3), (32, 32)])
@pytest.mark.parametrize("window", [(1, 1), (3, 3), (2, 5)])
@pytest.mark.parametrize("pad", [(0, 0, 0, 0), (1, 1, 1, 1), (0, 1, 2, 0)])
@pytest.mark.parametrize("stride", [(1, 1), (2, 3)])
@pytest.mark.parametrize("dilate", [(1, 1), (2, 1)])
def test_window_output_size_counts_the_windows_that_fit(h, w, window, pad, stride, dilate):
    expected = (reference_size(h, window[0], pad[0], pad[1], stride[0], dilate[0]),
                reference_size(w, window[1], pad[2], pad[3], stride[1], dilate[1]))
    assert window_output_size(h, w, window, pad, stride, dilate) == expected


def test_window_output_size_defaults_and_no_fit():
    assert window_output_size(5, 5, (3, 3)) == (3, 3)
    assert window_output_size(2, 9, (3, 3)) == (0, 7)
    assert window_output_size(2, 2, (3, 3), stride=(5, 5)) == (0, 0)
    assert window_output_size(1, 1, (2, 2), dilate=(9, 9), pad=(9, 0, 0, 0)) == (1, 0)


def test_window_output_size_is_what_conv_and_pool_give():
    from cnnx import vl_nnconv, vl_nnpool
    x = np.zeros((9, 8, 2, 1), np.float32)
    f = np.zeros((3, 2, 2, 1), np.float32)
    y = vl_nnconv(x, f, None, pad=[1, 0, 2, 1], stride=[2, 3], dilate=[2, 1])
    assert y.shape[:2] == window_output_size(9, 8, (3, 2), (1, 0, 2, 1), (2, 3), (2, 1))
    y = vl_nnpool(x, [3, 2], pad=[1, 0, 1, 1], stride=[2, 3])
    assert y.shape[:2] == window_output_size(9, 8, (3, 2), (1, 0, 1, 1), (2, 3))


@pytest.mark.parametrize("c, weights, dims", [
    ([1, 2, 3], False, (1, 1, 3)),
    (np.ones((3, 1)), False, (1, 1, 3)),
    (np.ones((2, 4, 1, 3)), False, (8, 1, 3)),
    (np.ones((2, 4, 2, 3)), True, (8, 2, 3)),
    (np.ones((1, 1, 2, 3)), True, (1, 2, 3)),
    (np.ones((2, 4, 1, 3), np.uint8), False, (8, 1, 3)),
])
def test_parse_labels_accepted_forms(c, weights, dims):
    labels = parse_labels("f", c, 2, 4, 5, 3, weights=weights)
    assert labels.shape == dims and labels.dtype == np.float64 and labels.flags.f_contiguous
    np.testing.assert_array_equal(labels.ravel(order="F"), np.asarray(c, np.float64).ravel(order="F"))


def test_parse_labels_pixels_in_fortran_order():
    c = np.arange(24, dtype=np.float64).reshape(2, 4, 1, 3, order="F") % 6
    labels = parse_labels("f", c, 2, 4, 5, 3)
    np.testing.assert_array_equal(labels[:, 0, :], c.reshape(8, 3, order="F"))


@pytest.mark.parametrize("c", [np.ones((2, 4, 2, 3)), np.ones((1, 1, 2, 3)), np.ones((2, 4, 3, 3)),
                               np.ones((4, 2, 1, 3)), np.ones(5), np.ones((2, 4, 1, 3, 2))])
def test_parse_labels_refuses_other_shapes(c):
    message = (f"f: labels C have shape {c.shape} but X is 2 x 4 x 5 x 3; give N labels (one per image) "
               "or an H x W x 1 x N array")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_labels("f", c, 2, 4, 5, 3)


@pytest.mark.parametrize("bad, shown", [(6, "6"), (-0.5, "-0.5"), (0.5, "0.5"), (np.nan, "nan"), (-np.inf, "-inf"),
                                        (1e30, "1000000000000000019884624838656")])
def test_parse_labels_values(bad, shown):
    c = np.array([1.0, 0.0, bad])
    message = ("g: labels C must be whole numbers of at most 5 (1..C are the C = 5 classes, 0 or less ignores an "
               f"instance), got {shown}")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_labels("g", c, 1, 1, 5, 3)
    labels = parse_labels("g", c, 1, 1, 5, 3, check_values=False)  # checked later, by the same text
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        check_label_values("g", labels, 5)


def test_parse_labels_weights_are_not_checked_as_classes():
    c = np.ones((1, 1, 2, 3))
    c[0, 0, 1, :] = [0.5, 7, -2]
    assert parse_labels("f", c, 2, 4, 5, 3, weights=True)[0, 1, 1] == 7


@pytest.mark.parametrize("c, images, classes, error, message", [
    (np.ones((2, 3)), 3, False, ValueError,
     "f: labels C have shape (2, 3) for 3 images; give N labels (one per image) or an H x W x 1|2 x N array"),
    (np.array([1.0, np.nan]), 2, False, ValueError, "f: labels C must be finite, got NaN or infinity"),
    (np.array(["a", "b"]), 2, False, TypeError, "f: labels C must be real numbers, got a <U1 array"),
    (np.array([1, 2.0**63]), 2, True, ValueError,
     "f: labels C must be whole numbers below 2^63 (0 or less ignores an instance), got 9223372036854775808"),
    (np.full((2, 2, 2, 1), 0.5), 1, True, ValueError,
     "f: labels C must be whole numbers below 2^63 (0 or less ignores an instance), got 0.5"),
])
def test_batch_labels_refuses(c, images, classes, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        batch_labels("f", c, images, classes=classes)


def test_batch_labels_accepts_parse_labels_forms_and_ignores_weights():
    weighted = np.concatenate([np.ones((2, 2, 1, 3)), np.full((2, 2, 1, 3), 0.5)], axis=2)
    assert batch_labels("f", weighted, 3, classes=True) is weighted  # weights need not be whole
    assert batch_labels("f", [1, 2, 0], 3, classes=True).tolist() == [1, 2, 0]
    assert batch_labels("f", [1, -2, 0], 3, classes=True).tolist() == [1, -2, 0]  # <= 0: ignored
    assert batch_labels("f", np.ones((4, 5)), 1).shape == (4, 5)  # H x W, N = 1
