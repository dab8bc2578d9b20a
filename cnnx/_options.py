"""MatConvNet-style options: name/value pairs and Python keywords, parsed and validated in one place.

Every block declares its options as a dict ``{python_name: Option}``. A call may give them as Python
keywords (``pad=1``) or, after the array arguments, as MatConvNet name/value pairs (``'Pad', 1``);
names match case-insensitively and ignoring underscores, so ``'NoDerData'`` is ``no_der_data``.
Flags (``kind='flag'``) take no value in the name/value form, as in MatConvNet's MEX files;
switches (``kind='bool'``, MATLAB functions' ``vl_argparse`` options) take true or false.
"""
import math
import numbers
import operator

import numpy as np


class Option:
    """One option: its kind, default and, for strings, the allowed values.

    kind is one of 'flag' (true when named), 'bool' (true or false, given as a value), 'pad4'
    (scalar or [top, bottom, left, right], each >= 0), 'pair' (scalar or [y, x], each >= 1),
    'pair0' (as pair, each >= 0), 'int' (>= 0), 'float', 'choice' (case-insensitive string from
    ``choices``) or 'any'. Integers must be whole numbers below ``INT_OPTION_LIMIT`` (2^62); floats
    must fit a double. ``low`` bounds an 'int' (0 by default) or a 'float'; ``high`` (excluded when
    ``high_open``) bounds a 'float' (``low`` excluded when ``low_open``), and ``finite`` makes it
    refuse infinities and NaN.
    """

    def __init__(self, kind, default=None, choices=None, display=None, low=None, high=None, high_open=False,
                 finite=False, low_open=False):
        self.kind = kind
        self.default = default
        self.choices = choices
        self.display = display
        self.low = low
        self.high = high
        self.high_open = high_open
        self.low_open = low_open
        self.finite = finite


def _key(name):
    return name.lower().replace("_", "")


def _display(name, option):
    return option.display or "".join(part.capitalize() for part in name.split("_"))


def split_derivative(args, fname, name="DZDY"):
    """Split ``args`` into a leading derivative array (or None) and the remaining name/value pairs.

    Like MatConvNet, the first positional argument is a derivative unless it is a string; an empty
    derivative (``None`` or ``[]``) means a forward call.
    """
    if args and not isinstance(args[0], str):
        der = args[0]
        if der is not None and np.size(der) == 0 and not isinstance(der, np.ndarray):
            der = None  # MATLAB's [] placeholder
        return der, args[1:]
    return None, args


def take_derivative(args, kwargs, fname):
    """Split off the derivative, given positionally (MatConvNet) or as the keyword ``dzdy``.

    Returns ``(dzdy, args, kwargs)`` with the derivative removed; ``dzdy`` is None for a forward
    call (also for MATLAB's ``[]``).
    """
    dzdy, args = split_derivative(args, fname)
    if "dzdy" in kwargs:
        kwargs = dict(kwargs)
        keyword = kwargs.pop("dzdy")
        if dzdy is not None:
            raise TypeError(f"{fname}: DZDY is given both positionally and as a keyword")
        if isinstance(keyword, str):
            raise TypeError(f"{fname}: DZDY must be an array, got the string {keyword!r}")
        dzdy, _ = split_derivative((keyword,), fname)
    return dzdy, args, kwargs


# Per option spec (keyed by id, holding the spec so that the id stays its own, and rebuilt if the
# spec's names change): the spec's names by matching key and their display names. Blocks parse
# options on every call; building these each time was a third of the parsing. Bounded, for callers
# that build a spec per call.
_SPEC_TABLES = {}
_SPEC_TABLES_MAX = 256


def _spec_table(spec):
    entry = _SPEC_TABLES.get(id(spec))
    if entry is None or entry[0] is not spec or len(entry[2]) != len(spec):
        if len(_SPEC_TABLES) >= _SPEC_TABLES_MAX:
            _SPEC_TABLES.clear()
        entry = (spec, {_key(name): name for name in spec}, {name: _display(name, o) for name, o in spec.items()})
        _SPEC_TABLES[id(spec)] = entry
    return entry[1], entry[2]


def parse_options(fname, args, kwargs, spec):
    """Merge name/value pairs ``args`` and keywords ``kwargs`` into a validated dict keyed by spec names.

    Raises TypeError for an unknown option name or a name/value list that is not of that form, and
    ValueError for a value outside its allowed range.
    """
    by_key, display = _spec_table(spec)
    given = {}

    def take(raw_name, value, has_value):
        if not isinstance(raw_name, str):
            raise TypeError(f"{fname}: expected an option name (a string), got {type(raw_name).__name__}")
        name = by_key.get(_key(raw_name))
        if name is None:
            if not spec:
                raise TypeError(f"{fname}: unknown option '{raw_name}'; {fname} takes no options")
            valid = ", ".join(display.values())
            raise TypeError(f"{fname}: unknown option '{raw_name}'. Valid options are: {valid}")
        if spec[name].kind == "flag" and not has_value:
            value = True
        if name in given:
            raise TypeError(f"{fname}: option '{display[name]}' is given twice")
        given[name] = value

    i = 0
    while i < len(args):
        raw = args[i]
        if not isinstance(raw, str):
            raise TypeError(
                f"{fname}: expected an option name (a string) at position {i + 1} of the options, "
                f"got {type(raw).__name__}"
            )
        name = by_key.get(_key(raw))
        if name is not None and spec[name].kind == "flag":
            take(raw, True, False)
            i += 1
            continue
        if i + 1 >= len(args):
            if name is None:
                take(raw, None, False)  # raises the unknown-option error
            raise TypeError(f"{fname}: option '{raw}' needs a value")
        take(raw, args[i + 1], True)
        i += 2
    for raw, value in kwargs.items():
        take(raw, value, True)

    out = {name: option.default for name, option in spec.items()}
    for name, value in given.items():
        out[name] = validate_value(fname, display[name], spec[name], value)
    return out


# Integer option values (pads, strides, dilations, pool sizes) must stay below this: the kernels
# index with 64-bit integers, and a sum of two such values must not overflow.
INT_OPTION_LIMIT = 2**62


def whole_numbers(fname, label, value):
    """The whole numbers in ``value`` (a number, an array or a list of numbers) as exact Python ints.

    Each element is converted on its own, so that a list mixing Python and NumPy integers is not
    rounded through float64 on the way; a single logical counts as 0 or 1.
    """
    # What the graphs pass every call (pads, strides, pool sizes): Python ints, alone or in a list
    # or tuple, are already the answer (type() is int leaves out bool).
    if type(value) is int:
        return [value]
    if type(value) in (list, tuple) and all(type(v) is int for v in value):
        return list(value)
    try:
        arr = np.asarray(value, dtype=object) if isinstance(value, (list, tuple)) else np.asarray(value)
    except ValueError:
        arr = np.asarray(None)
    items = arr.reshape(-1).tolist() if arr.dtype.kind in "biufO" else None
    if items is None or any(isinstance(v, (bool, np.bool_)) for v in items) and len(items) != 1:
        raise TypeError(f"{fname}: {label} must be numeric, got {value!r}")
    out = []
    for v in items:
        if isinstance(v, (bool, np.bool_, numbers.Integral)):
            out.append(int(v))
        elif isinstance(v, numbers.Real):
            v = float(v)
            if not (math.isfinite(v) and v == math.trunc(v)):
                raise ValueError(f"{fname}: {label} must hold whole numbers, got {value!r}")
            out.append(int(v))
        else:
            raise TypeError(f"{fname}: {label} must be numeric, got {value!r}")
    return out


def _check_limit(fname, label, vals, value):
    if max(vals) >= INT_OPTION_LIMIT:
        raise ValueError(f"{fname}: {label} must be less than 2^62, got {value!r}")


def truth_value(fname, label, value, doubles=False):
    """The rule of every true/false value: a logical or the integer 0 or 1, as a bool.

    ``doubles=True`` also takes 0.0 and 1.0, as MATLAB stores logicals read from its files; a
    Python float is otherwise not a logical (TypeError).
    """
    kinds = (bool, np.bool_, numbers.Integral) + ((numbers.Real,) if doubles else ())
    if not isinstance(value, kinds):
        raise TypeError(f"{fname}: {label} must be true or false, got {value!r}")
    if value not in (0, 1):  # NaN is neither
        raise ValueError(f"{fname}: {label} must be true or false (or 1 or 0), got {value!r}")
    return bool(value)


def _integer_text(low):
    return {0: "a non-negative integer", 1: "a positive integer"}.get(low, f"an integer of at least {low}")


def integer(fname, label, value, low=0):
    """The rule of every integer value: one whole number (see :func:`whole_numbers`), at least
    ``low`` and below 2^62, as a Python int."""
    vals = whole_numbers(fname, label, value)
    if len(vals) != 1 or vals[0] < low:
        raise ValueError(f"{fname}: {label} must be {_integer_text(low)}, got {value!r}")
    _check_limit(fname, label, vals, value)
    return vals[0]


def limit(fname, label, value):
    """A positive integer (:func:`integer`) or MATLAB's ``inf`` for no limit (a depth, an epoch size)."""
    if isinstance(value, float) and value == math.inf:
        return value
    return integer(fname, label, value, low=1)


def real_number(fname, label, value, low=-math.inf, high=math.inf, high_open=False, finite=False, low_open=False):
    """The rule of every real value: a number that fits a double, as a float; with ``finite``
    not infinite nor NaN, and within ``[low, high]`` (``[low, high)`` when ``high_open``, ``(low, high]``
    when ``low_open``).
    A logical is not a real number (``True`` is a TypeError)."""
    if isinstance(value, (str, bytes, bool, np.bool_)):
        raise TypeError(f"{fname}: {label} must be a real number, got {value!r}")
    try:
        number = float(operator.index(value)) if isinstance(value, numbers.Integral) else float(value)
    except OverflowError:  # an int beyond double's range
        raise ValueError(f"{fname}: {label} must be a finite real number, got {value!r}") from None
    except (TypeError, ValueError):
        raise TypeError(f"{fname}: {label} must be a real number, got {value!r}") from None
    if finite and not math.isfinite(number):
        raise ValueError(f"{fname}: {label} must be a finite real number, got {number}")
    bounded = low > -math.inf or high < math.inf
    if bounded and not low <= number <= high or high_open and number == high or low_open and number == low:
        # (NaN is in no range)
        if high == math.inf:
            bound = f"greater than {low}" if low_open else f"at least {low}"
        else:
            bound = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{fname}: {label} must be {bound}, got {number}")
    return number


def choice_value(fname, label, value, choices):
    """The rule of every string choice: one of ``choices``, any case, as lower case."""
    if not isinstance(value, str) or value.lower() not in choices:
        allowed = ", ".join(f"'{c}'" for c in choices)
        raise ValueError(f"{fname}: {label} must be one of {allowed}, got {value!r}")
    return value.lower()


def validate_value(fname, label, option, value):
    """Check one value against ``option``'s kind and return it normalised (ints as tuples, ...).

    Also used for positional arguments with option-like rules (a pool size is a 'pair').
    """
    kind = option.kind
    if kind in ("flag", "bool"):
        return truth_value(fname, label, value)
    if kind == "pad4":
        vals = whole_numbers(fname, label, value)
        if len(vals) == 1:
            vals = vals * 4
        if len(vals) != 4:
            raise ValueError(f"{fname}: {label} must have 1 or 4 elements [TOP BOTTOM LEFT RIGHT], got {len(vals)}")
        if min(vals) < 0:
            raise ValueError(f"{fname}: {label} must be non-negative, got {vals}")
        _check_limit(fname, label, vals, value)
        return tuple(vals)
    if kind in ("pair", "pair0"):
        vals = whole_numbers(fname, label, value)
        if len(vals) == 1:
            vals = vals * 2
        if len(vals) != 2:
            raise ValueError(f"{fname}: {label} must have 1 or 2 elements [Y X], got {len(vals)}")
        lowest = 1 if kind == "pair" else 0
        if min(vals) < lowest:
            raise ValueError(f"{fname}: {label} must be at least {lowest}, got {vals}")
        _check_limit(fname, label, vals, value)
        return tuple(vals)
    if kind == "int":
        return integer(fname, label, value, option.low or 0)
    if kind == "float":
        low = -math.inf if option.low is None else option.low
        high = math.inf if option.high is None else option.high
        return real_number(fname, label, value, low, high, option.high_open, option.finite, option.low_open)
    if kind == "choice":
        return choice_value(fname, label, value, option.choices)
    return value


# GPU-only switches that MatConvNet models carry in a layer's opts; the CPU blocks have no use for them.
_GPU_FLAGS = {"cudnn", "nocudnn"}
_GPU_OPTIONS = {"cudnnworkspacelimit"}


def without_gpu_options(opts):
    """MatConvNet name/value options with the cuDNN flags and options (GPU only) removed."""
    out = []
    items = list(opts or [])
    i = 0
    while i < len(items):
        key = items[i].lower() if isinstance(items[i], str) else None
        if key in _GPU_FLAGS:
            i += 1
        elif key in _GPU_OPTIONS:
            i += 2
        else:
            out.append(items[i])
            i += 1
    return out
