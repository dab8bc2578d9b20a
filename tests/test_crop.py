"""vl_nncrop against slicing, finite differences and MatConvNet's outputs."""
import os
import re

import numpy as np
import pytest
import scipy.io

from cnnx import vl_nncrop
from cnnx.testing import check_derivative

DATA = os.path.join(os.path.dirname(__file__), "data", "mcn_crop.mat")


@pytest.mark.parametrize("shape, crop", [((5, 6, 2, 3), [1, 2, 0, 3]), ((4, 4, 3), 1), ((3, 5), [0, 0, 2, 2])])
def test_forward_backward_and_derivative(shape, crop):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    ct, cb, cl, cr = [crop] * 4 if np.isscalar(crop) else crop
    y = vl_nncrop(x, crop)
    np.testing.assert_array_equal(y, x[ct:shape[0] - cb, cl:shape[1] - cr])
    assert y.flags.f_contiguous
    dzdy = rng.standard_normal(y.shape)
    dzdx = vl_nncrop(x, crop, dzdy)
    check_derivative(lambda t: vl_nncrop(t, crop), x, dzdy, dzdx, method="central")
    np.testing.assert_array_equal(vl_nncrop(None, crop, dzdy, shape), dzdx)
    x.flags.writeable = False
    np.testing.assert_array_equal(vl_nncrop(x, crop), y)


def test_whole_crop_is_empty():
    assert vl_nncrop(np.ones((2, 3, 1), np.float32), [1, 1, 0, 0]).shape == (0, 3, 1)


@pytest.mark.parametrize("call, message", [
    (lambda: vl_nncrop(np.ones((2, 3)), [2, 1, 0, 0]), "vl_nncrop: CROP [2, 1, 0, 0] is larger than X (2 x 3)"),
    (lambda: vl_nncrop(np.ones((2, 3)), [1, 1]),
     "vl_nncrop: CROP must have 1 or 4 elements [TOP BOTTOM LEFT RIGHT], got 2"),
    (lambda: vl_nncrop(np.ones((2, 3)), [0, 0, 0, 1], np.ones((2, 3))),
     "vl_nncrop: DZDY has shape (2, 3) but Y has shape (2, 2)"),
    (lambda: vl_nncrop(None, 0, np.ones((2, 3))), "vl_nncrop: X is empty; the backward call needs DZDY and INPUTSIZE"),
])
def test_errors(call, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        call()


def load_reference():
    cases = scipy.io.loadmat(DATA, squeeze_me=False, struct_as_record=False)["cases"][0]
    return [pytest.param(c[0, 0], id=str(c[0, 0].name[0])) for c in cases]


@pytest.mark.parametrize("case", load_reference())
def test_matches_matconvnet(case):
    y = vl_nncrop(case.x, case.crop)
    assert y.dtype == case.y.dtype
    np.testing.assert_array_equal(y, case.y)
    np.testing.assert_array_equal(vl_nncrop(case.x, case.crop, case.dzdy), case.dzdx)
    np.testing.assert_array_equal(vl_nncrop(None, case.crop, case.dzdy, case.x.shape), case.dzdx)
