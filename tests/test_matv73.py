"""MATLAB v7.3 (HDF5) model files: load_matconvnet reads them through h5py as it reads v5 files.

The v7.3 files are written by hdf5storage, an implementation of MATLAB's HDF5 layout independent of
cnnx's reader, from the very values a v5 file holds; each test checks that both files give the same.
"""
import sys

import numpy as np
import pytest
import scipy.io
from scipy.io.matlab import mat_struct

from cnnx import models
from cnnx.dagnn import DagNN
from cnnx.io import load_matconvnet, save_matconvnet

hdf5storage = pytest.importorskip("hdf5storage")
from cnnx._matv73 import read_variables  # noqa: E402  (needs h5py, which hdf5storage brings)


def hdf5storage_value(value):
    """A loadmat value (struct_as_record=False, squeeze_me=False) as hdf5storage writes it back."""
    if isinstance(value, mat_struct):
        return {name: hdf5storage_value(getattr(value, name)) for name in value._fieldnames}
    if isinstance(value, np.ndarray) and value.dtype == object:
        if value.size and all(isinstance(v, mat_struct) for v in value.flat):
            if value.size == 1:
                return hdf5storage_value(value.flat[0])
            names = value.flat[0]._fieldnames
            array = np.zeros(value.shape, dtype=[(name, object) for name in names])
            for index in np.ndindex(value.shape):
                array[index] = tuple(hdf5storage_value(getattr(value[index], name)) for name in names)
            return array
        cell = np.empty(value.shape, dtype=object)
        for index in np.ndindex(value.shape):
            cell[index] = hdf5storage_value(value[index])
        return cell
    if isinstance(value, np.ndarray) and value.dtype.kind == "U":
        return str(value[0]) if value.size else ""
    return value


def write_v73(v5_path, v73_path):
    """Write the variables of the v5 file ``v5_path`` to ``v73_path`` in MATLAB's v7.3 layout."""
    raw = scipy.io.loadmat(v5_path, mat_dtype=True, struct_as_record=False, squeeze_me=False)
    variables = {name: hdf5storage_value(value) for name, value in raw.items() if not name.startswith("__")}
    hdf5storage.savemat(str(v73_path), variables, format="7.3", store_python_metadata=False)


def assert_same_values(a, b, where="value"):
    """Recursive equality of two loadmat-style values: types, dtypes, shapes and bits."""
    assert type(a) is type(b), where
    if isinstance(a, mat_struct):
        assert a._fieldnames == b._fieldnames, where
        for name in a._fieldnames:
            assert_same_values(getattr(a, name), getattr(b, name), f"{where}.{name}")
    elif a.dtype == object:
        assert a.shape == b.shape, where
        for index in np.ndindex(a.shape):
            assert_same_values(a[index], b[index], f"{where}{list(index)}")
    else:
        assert (a.dtype, a.shape) == (b.dtype, b.shape), where
        np.testing.assert_array_equal(a, b, err_msg=where)


def test_read_variables_gives_what_loadmat_gives(tmp_path):
    structs = np.zeros((1, 2), dtype=[("name", object), ("x", object)])
    structs[0, 0] = ("a", np.array([[1.0, 2.0]]))
    structs[0, 1] = ("bb", np.zeros((0, 0)))
    cell = np.empty((2, 1), dtype=object)
    cell[0, 0], cell[1, 0] = "hi", np.arange(24, dtype=np.float32).reshape(2, 3, 4, order="F")
    value = {"flag": np.array([[True, False]]), "text": "abc", "empty": np.zeros((0, 0)), "no_text": "",
             "cell": cell, "structs": structs, "small": np.array([[3]], np.int8), "wide": np.arange(6.0).reshape(2, 3),
             "empty_cell": np.empty((0, 0), dtype=object), "inner": {"k": np.array([[7.0]], np.float32)}}
    scipy.io.savemat(tmp_path / "v5.mat", {"net": value, "count": 4.0})
    write_v73(tmp_path / "v5.mat", tmp_path / "v73.mat")
    expected = scipy.io.loadmat(tmp_path / "v5.mat", mat_dtype=True, struct_as_record=False, squeeze_me=False)
    got = read_variables(str(tmp_path / "v73.mat"))
    assert sorted(got) == ["count", "net"]
    for name in got:
        assert_same_values(expected[name], got[name], name)


def test_complex_numbers_stay_complex(tmp_path):
    # loadmat's mat_dtype drops imaginary parts; cnnx refuses complex weights, so they must survive.
    hdf5storage.savemat(str(tmp_path / "c.mat"), {"z": np.array([[1 + 2j, 3 - 1j]])}, format="7.3",
                        store_python_metadata=False)
    np.testing.assert_array_equal(read_variables(str(tmp_path / "c.mat"))["z"], [[1 + 2j, 3 - 1j]])


def networks():
    simplenn = models.cifar_lenet(rng=0)
    return {"simplenn": simplenn, "dagnn": DagNN.from_simplenn(simplenn, canonical_names=True)}


@pytest.mark.parametrize("wrapper", ["simplenn", "dagnn"])
def test_v73_network_loads_as_its_v5_file(tmp_path, wrapper):
    net = networks()[wrapper]
    save_matconvnet(net, tmp_path / "v5.mat", stats={"epoch": 3.0})
    write_v73(tmp_path / "v5.mat", tmp_path / "v73.mat")
    from_v5, extra_v5 = load_matconvnet(tmp_path / "v5.mat", with_extra=True)
    from_v73, extra_v73 = load_matconvnet(tmp_path / "v73.mat", with_extra=True)
    # cnnx writes deterministically: the same network gives the same bytes.
    save_matconvnet(from_v5, tmp_path / "again_v5.mat", **extra_v5)
    save_matconvnet(from_v73, tmp_path / "again_v73.mat", **extra_v73)
    assert (tmp_path / "again_v5.mat").read_bytes() == (tmp_path / "again_v73.mat").read_bytes()
    assert extra_v73["stats"] == {"epoch": 3.0}


def test_v73_layer_error_names_the_layer(tmp_path):
    layers = np.empty((1, 1), dtype=object)
    layers[0, 0] = {"type": "conv", "name": "conv1", "pad": 1.5, "stride": 1.0,
                    "weights": np.array([[np.ones((3, 3, 1, 2), np.float32), np.zeros((1, 2), np.float32)]],
                                        dtype=object)}
    hdf5storage.savemat(str(tmp_path / "bad.mat"), {"net": {"layers": layers, "meta": {}}}, format="7.3",
                        store_python_metadata=False)
    with pytest.raises(ValueError) as error:
        load_matconvnet(tmp_path / "bad.mat")
    assert str(error.value) == (f"load_matconvnet: {tmp_path / 'bad.mat'}: layers[0] ('conv1'): pad must be 1 or 4 "
                                "whole numbers [TOP BOTTOM LEFT RIGHT], got 1.5")


def test_v73_without_h5py_names_the_extra(tmp_path, monkeypatch):
    hdf5storage.savemat(str(tmp_path / "net.mat"), {"x": 1.0}, format="7.3", store_python_metadata=False)
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py now raises ImportError
    with pytest.raises(ImportError) as error:
        load_matconvnet(tmp_path / "net.mat")
    assert str(error.value) == (f"load_matconvnet: {tmp_path / 'net.mat'} is a MATLAB v7.3 (HDF5) file; reading it "
                                "needs h5py: pip install 'cnnx[hdf5]' (or pip install h5py)")


def test_damaged_v73_file_is_a_value_error(tmp_path):
    hdf5storage.savemat(str(tmp_path / "net.mat"), {"x": np.ones((50, 50))}, format="7.3",
                        store_python_metadata=False)
    data = (tmp_path / "net.mat").read_bytes()
    (tmp_path / "net.mat").write_bytes(data[:1024])
    with pytest.raises(ValueError, match=r"^load_matconvnet: cannot read .*net\.mat as a \.mat file \("):
        load_matconvnet(tmp_path / "net.mat")
