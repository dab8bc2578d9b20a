"""Every public name is documented, and the examples in the docstrings run and give what they show."""
import doctest
import importlib
import inspect
import pkgutil

import pytest

import cnnx


def public_modules():
    names = ["cnnx"]
    for info in pkgutil.walk_packages(cnnx.__path__, "cnnx."):
        if not any(part.startswith("_") for part in info.name.split(".")[1:]):
            names.append(info.name)
    return names


def public_callables():
    for name in cnnx.__all__:
        obj = getattr(cnnx, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            yield name, obj


@pytest.mark.parametrize("name, obj", list(public_callables()))
def test_public_names_have_numpydoc_docstrings(name, obj):
    doc = inspect.getdoc(obj)
    assert doc, f"cnnx.{name} has no docstring"
    assert "Examples" in doc, f"cnnx.{name}'s docstring has no Examples section"


@pytest.mark.parametrize("module_name", public_modules())
def test_module_docstring_and_examples(module_name):
    module = importlib.import_module(module_name)
    assert inspect.getdoc(module), f"{module_name} has no module docstring"
    failures, _ = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert failures == 0, f"{failures} docstring example(s) in {module_name} failed"
