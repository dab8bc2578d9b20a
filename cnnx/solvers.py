"""The solvers of :func:`cnnx.train.cnn_train`: MatConvNet's default SGD and its ``+solver/*.m``.

One object per solver holds the solver's options and knows, for one parameter ``w``:

- ``init_state(w)``: the state before the first update (zeros, which give MatConvNet's first
  step exactly);
- ``step(w, state, g, lr)``: the update, given the derivative ``g`` that cnn_train has already
  divided by the batch size and weight-decayed (``g = g / batch_size + wd * w``) and the
  parameter's learning rate ``lr`` (the epoch's rate times the parameter's multiplier); it
  returns ``(new w, new state)``;
- ``update(w, state, der, scale, decay, lr)``: what cnn_train calls, ``step`` of
  ``g = scale * der + decay * w``; ``SGD`` runs it as one fused kernel (cnnx/_ext/sgd.pyx) with
  the same bits;
- ``saved_state(state)``: what a checkpoint ``net-epoch-N.mat`` stores for it, MatConvNet's layout
  of ``state.solverState``;
- ``restore_state(saved, w, where)``: the state again, from what ``load_matconvnet`` read from a
  checkpoint (MatConvNet's ``0`` before the first update included).

The solvers (``w``, ``g`` and the states are arrays of the parameter's shape and dtype):

=================  ==================================================  ===========================
class              update                                              checkpoint layout
=================  ==================================================  ===========================
``SGD``            ``v = momentum * v - g``;                           ``v``
                   ``w += lr * (momentum * v - g if nesterov else v)``
``Adam``           ``m = beta1 m + (1 - beta1) g``,                    struct ``m``, ``v``, ``t``
                   ``v = beta2 v + (1 - beta2) g^2``, ``t += 1``,
                   ``w -= lr sqrt(1 - beta2^t) / (1 - beta1^t)
                   * m / (sqrt(v) + eps)``
``AdaGrad``        ``s = rho s + g^2``,                                ``s``
                   ``w -= lr g / (sqrt(s) + epsilon)``
``AdaDelta``       ``s = rho s + (1 - rho) g^2``,                      struct ``g_sqr``,
                   ``d = -sqrt((D + epsilon) / (s + epsilon)) g``,     ``delta_sqr``
                   ``D = rho D + (1 - rho) d^2``, ``w += d`` (no lr)
``RMSProp``        ``s = rho s + (1 - rho) g^2``,                      ``s``
                   ``w -= lr g / (sqrt(s) + epsilon)``
``UserSolver``     ``w, state = function(w, state, g, solver_opts,     whatever ``function``
                   lr)``, ``state`` starting at ``0.0``                returns
=================  ==================================================  ===========================

``SOLVERS`` maps MatConvNet's names (``'sgd'``, ``'adam'``, ``'adagrad'``, ``'adadelta'``,
``'rmsprop'``) to the classes. cnn_train's ``solver`` option takes such a name (None is
``'sgd'``, with the ``momentum`` and ``nesterov`` options), a callable (wrapped in
``UserSolver`` with ``solver_opts``), or a solver object, which carries its own options.
A subclass of :class:`Solver` that implements the four methods is a new solver.

Examples
--------
>>> import numpy as np
>>> from cnnx import solvers
>>> sorted(solvers.SOLVERS)
['adadelta', 'adagrad', 'adam', 'rmsprop', 'sgd']
>>> adam = solvers.Adam(beta1=0.8)
>>> adam
Adam(beta1=0.8, beta2=0.999, eps=1e-08)
>>> w = np.ones(3, np.float32)
>>> state = adam.init_state(w)
>>> w, state = adam.step(w, state, np.float32([1, -1, 0]), 0.1)
>>> np.round(w, 4)
array([0.9, 1.1, 1. ], dtype=float32)
>>> state["t"]
1
"""
import math

import numpy as np

from ._ext import sgd as _sgd_kernel
from ._options import real_number, truth_value
from ._threads import threads_for

__all__ = ["SOLVERS", "AdaDelta", "AdaGrad", "Adam", "RMSProp", "SGD", "Solver", "UserSolver"]

_FNAME = "cnn_train"  # messages about checkpoints and cnn_train's options name the trainer


def _nonnegative(fname, name, value, below=None):
    """A finite real number at least 0 (and below ``below``), as a float (cnnx._options' rule)."""
    if below is None:
        return real_number(fname, name, value, low=0.0, finite=True)
    return real_number(fname, name, value, 0.0, below, high_open=True, finite=True)


def _state_array(saved, w, where):
    """A saved state array as an array like ``w``; MatConvNet's 0 (no update yet) gives zeros."""
    arr = np.asarray(saved)
    if arr.size == 1 and w.size != 1 and arr.reshape(-1)[0] == 0:
        return np.zeros_like(w)
    if arr.size != w.size:
        raise ValueError(f"{_FNAME}: the checkpoint's solver state for {where} has {arr.size} elements, "
                         f"the parameter {w.size}")
    return np.array(arr, dtype=w.dtype).reshape(w.shape)


def _is_zero(saved):
    """MatConvNet's initial solver state: the number 0."""
    return not isinstance(saved, dict) and np.size(saved) == 1 and np.ravel(saved)[0] == 0


def _fusable(w, state, der):
    """Whether a fused kernel can update ``w`` from ``der`` and its array ``state``: float32 or float64
    arrays of one dtype and shape, ``w`` and ``der`` Fortran-contiguous."""
    arrays = (w, state, der)
    return (all(isinstance(a, np.ndarray) for a in arrays) and w.dtype in (np.float32, np.float64)
            and all(a.dtype == w.dtype and a.shape == w.shape for a in arrays)
            and w.flags.f_contiguous and der.flags.f_contiguous)


class Solver:
    """Base class of the solvers: options, state, step, and the state in a checkpoint.

    A subclass sets ``name`` (its MatConvNet name, used in messages) and ``defaults`` (its options
    and their defaults, which ``cnn_train``'s ``solver_opts`` may override), takes the options as
    keywords, and implements :meth:`init_state`, :meth:`step`, :meth:`saved_state` and
    :meth:`restore_state`. Options are attributes of the object.

    Examples
    --------
    A plain gradient step without state:

    >>> import numpy as np
    >>> from cnnx.solvers import Solver
    >>> class Plain(Solver):
    ...     name = "plain"
    ...     def init_state(self, w):
    ...         return None
    ...     def step(self, w, state, g, lr):
    ...         return w - lr * g, state
    ...     def saved_state(self, state):
    ...         return None
    ...     def restore_state(self, saved, w, where):
    ...         return None
    >>> Plain().step(np.ones(2), None, np.ones(2), 0.5)
    (array([0.5, 0.5]), None)
    """

    name = None
    defaults = {}

    def __init__(self, **options):
        fname = type(self).__name__
        for key, value in options.items():
            if key not in self.defaults:
                raise TypeError(f"{fname}: unknown option {key!r}; the options are {sorted(self.defaults)}")
        for key, default in self.defaults.items():
            setattr(self, key, _nonnegative(fname, key, options.get(key, default)))

    @classmethod
    def _from_solver_opts(cls, solver_opts, momentum, nesterov):
        """The solver for cnn_train's ``solver_opts`` (a dict or None), with cnn_train's messages."""
        merged = dict(cls.defaults)
        for key, value in (solver_opts or {}).items():
            if key not in merged:
                raise ValueError(f"{_FNAME}: solver_opts has unknown key {key!r} for solver '{cls.name}'; "
                                 f"valid keys are {sorted(merged)}")
            merged[key] = _nonnegative(_FNAME, f"solver_opts['{key}']", value)
        return cls(**merged)

    @property
    def options(self):
        """The options as a dict (cnn_train's ``solver_opts`` with the defaults filled in)."""
        return {key: getattr(self, key) for key in self.defaults}

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.options.items())})"

    def init_state(self, w):
        """The state of parameter ``w`` before its first update."""
        raise NotImplementedError

    def step(self, w, state, g, lr):
        """One update: ``(new w, new state)`` from the scaled, decayed derivative ``g``."""
        raise NotImplementedError

    def update(self, w, state, der, scale, decay, lr):
        """cnn_train's update: :meth:`step` of ``g = scale * der + decay * w``.

        ``der`` is the parameter's derivative summed over the batch, ``scale`` one over the batch
        size and ``decay`` the parameter's weight decay; returns ``(new w, new state)``.

        Examples
        --------
        >>> import numpy as np
        >>> from cnnx.solvers import SGD
        >>> SGD(momentum=0.0).update(np.ones(2), np.zeros(2), np.array([4.0, 8.0]), 0.25, 0.0, 0.5)[0]
        array([0.5, 0. ])
        """
        return self.step(w, state, scale * der + decay * w, lr)

    def saved_state(self, state):
        """What a checkpoint stores for ``state`` (MatConvNet's layout)."""
        raise NotImplementedError

    def restore_state(self, saved, w, where):
        """The state from what ``load_matconvnet`` read (``None`` for MATLAB's ``[]``)."""
        raise NotImplementedError


class _ArrayState(Solver):
    """A solver whose state is one array like the parameter (SGD's momentum, AdaGrad, RMSProp)."""

    def init_state(self, w):
        """Zeros like ``w``.

        Examples
        --------
        >>> import numpy as np
        >>> from cnnx.solvers import SGD
        >>> SGD().init_state(np.ones(2, np.float32))
        array([0., 0.], dtype=float32)
        """
        return np.zeros_like(w)

    def saved_state(self, state):
        """The state array itself.

        Examples
        --------
        >>> import numpy as np
        >>> from cnnx.solvers import RMSProp
        >>> RMSProp().saved_state(np.ones(2))
        array([1., 1.])
        """
        return state

    def restore_state(self, saved, w, where):
        """The saved array as an array of ``w``'s shape and dtype; ``[]`` or ``0``: zeros.

        Examples
        --------
        >>> import numpy as np
        >>> from cnnx.solvers import SGD
        >>> SGD().restore_state(np.array([1.0, 2.0]), np.zeros((1, 2), np.float32), "w")
        array([[1., 2.]], dtype=float32)
        >>> SGD().restore_state(0.0, np.ones(2, np.float32), "w")
        array([0., 0.], dtype=float32)
        """
        if saved is None:
            return self.init_state(w)
        return _state_array(saved, w, where)


class _StructState(Solver):
    """A solver whose state is a dict of arrays like the parameter (a MATLAB struct when saved)."""

    _arrays = ()  # the fields that are arrays like the parameter
    _counters = ()  # the fields that are whole numbers

    def init_state(self, w):
        """Zero arrays like ``w`` (and zero counters).

        Examples
        --------
        >>> import numpy as np
        >>> from cnnx.solvers import Adam
        >>> Adam().init_state(np.ones(2))
        {'m': array([0., 0.]), 'v': array([0., 0.]), 't': 0}
        """
        state = {key: np.zeros_like(w) for key in self._arrays}
        state.update({key: 0 for key in self._counters})
        return state

    def saved_state(self, state):
        """The state dict itself, saved as a MATLAB struct.

        Examples
        --------
        >>> import numpy as np
        >>> from cnnx.solvers import AdaDelta
        >>> AdaDelta().saved_state({"g_sqr": np.ones(1), "delta_sqr": np.zeros(1)})
        {'g_sqr': array([1.]), 'delta_sqr': array([0.])}
        """
        return state

    def restore_state(self, saved, w, where):
        """The saved struct as a state for ``w``; ``[]`` or ``0``: the initial state.

        Examples
        --------
        >>> import numpy as np
        >>> from cnnx.solvers import Adam
        >>> Adam().restore_state({"m": [1.0, 2.0], "v": [3.0, 4.0], "t": 5.0}, np.zeros(2), "w")
        {'m': array([1., 2.]), 'v': array([3., 4.]), 't': 5}
        """
        if saved is None or _is_zero(saved):
            return self.init_state(w)
        if not isinstance(saved, dict) or any(key not in saved for key in self._arrays + self._counters):
            raise ValueError(f"{_FNAME}: the checkpoint's solver state for {where} is not a '{self.name}' state")
        state = {key: _state_array(saved[key], w, where) for key in self._arrays}
        state.update({key: int(saved[key]) for key in self._counters})
        return state


class SGD(_ArrayState):
    """Stochastic gradient descent with momentum, MatConvNet's default solver.

    ``v = momentum * v - g``, then ``w = w + lr * v``, or with Nesterov's update
    ``w = w + lr * (momentum * v - g)``. The state ``v`` starts at zeros.

    Parameters
    ----------
    momentum : 0.9
        In [0, 1).
    nesterov : False
        Nesterov's update (MatConvNet's ``nesterovUpdate``).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.solvers import SGD
    >>> sgd = SGD(momentum=0.5)
    >>> w, v = sgd.step(np.zeros(2), sgd.init_state(np.zeros(2)), np.array([1.0, -2.0]), 0.1)
    >>> w, v
    (array([-0.1,  0.2]), array([-1.,  2.]))
    >>> sgd.step(w, v, np.zeros(2), 0.1)[0]
    array([-0.15,  0.3 ])
    """

    name = "sgd"
    defaults = {"momentum": 0.9, "nesterov": False}

    def __init__(self, momentum=0.9, nesterov=False):
        momentum = _nonnegative("SGD", "momentum", momentum, below=1.0)
        self.momentum = momentum
        self.nesterov = truth_value("SGD", "nesterov", nesterov)

    @classmethod
    def _from_solver_opts(cls, solver_opts, momentum, nesterov):
        if solver_opts is not None:
            raise ValueError(f"{_FNAME}: solver_opts given, but solver is None (SGD with momentum takes none)")
        return cls(momentum, nesterov)

    @property
    def options(self):
        """``{}``: SGD's options are cnn_train's ``momentum`` and ``nesterov``, not ``solver_opts``.

        Examples
        --------
        >>> from cnnx.solvers import SGD
        >>> SGD().options
        {}
        """
        return {}

    def __repr__(self):
        return f"SGD(momentum={self.momentum!r}, nesterov={self.nesterov!r})"

    def step(self, w, state, g, lr):
        """One SGD step; returns ``(w, v)``.

        Examples
        --------
        >>> import numpy as np
        >>> from cnnx.solvers import SGD
        >>> SGD(momentum=0.5, nesterov=True).step(np.zeros(1), np.zeros(1), np.ones(1), 1.0)
        (array([-1.5]), array([-1.]))
        """
        momentum = self.momentum
        state = momentum * state - g
        delta = momentum * state - g if self.nesterov else state
        return w + lr * delta, state

    def update(self, w, state, der, scale, decay, lr):
        """:meth:`Solver.update` in one pass over the elements: no temporaries, ``state`` updated
        in place, the same bits as :meth:`step` (a subclass that redefines ``step`` gets ``step``).

        Examples
        --------
        >>> import numpy as np
        >>> from cnnx.solvers import SGD
        >>> v = np.zeros(2, np.float32)
        >>> w, v = SGD(momentum=0.5).update(np.ones(2, np.float32), v, np.float32([2, -2]), 0.5, 0.0, 0.1)
        >>> w, v
        (array([0.9, 1.1], dtype=float32), array([-1.,  1.], dtype=float32))
        """
        if type(self).step is not SGD.step or not _fusable(w, state, der):
            return super().update(w, state, der, scale, decay, lr)
        if not (state.flags.f_contiguous and state.flags.writeable):  # a checkpoint's: copied once
            state = np.array(state, order="F")
        w_new = np.empty_like(w, order="F")
        _sgd_kernel.sgd_step(w, state, der, w_new, scale, decay, self.momentum, lr, self.nesterov,
                             threads_for(w.size))
        return w_new, state


class Adam(_StructState):
    """Adam (MatConvNet's ``solver.adam``), with the bias corrections folded into the rate.

    Parameters
    ----------
    beta1 : 0.9
        Decay of the first moment ``m``.
    beta2 : 0.999
        Decay of the second moment ``v``.
    eps : 1e-8
        Added to ``sqrt(v)``.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.solvers import Adam
    >>> adam = Adam()
    >>> w, state = adam.step(np.zeros(2), adam.init_state(np.zeros(2)), np.array([2.0, -1.0]), 0.01)
    >>> np.round(w, 6)
    array([-0.01,  0.01])
    """

    name = "adam"
    defaults = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    _arrays = ("m", "v")
    _counters = ("t",)

    def __init__(self, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(beta1=beta1, beta2=beta2, eps=eps)

    def step(self, w, state, g, lr):
        """One Adam step; returns ``(w, {'m': m, 'v': v, 't': t})``.

        Examples
        --------
        >>> import numpy as np
        >>> from cnnx.solvers import Adam
        >>> Adam().step(np.zeros(1), {"m": np.zeros(1), "v": np.zeros(1), "t": 0}, np.ones(1), 0.1)[1]["t"]
        1
        """
        beta1, beta2 = self.beta1, self.beta2
        m = beta1 * state["m"] + (1 - beta1) * g
        v = beta2 * state["v"] + (1 - beta2) * g * g
        t = state["t"] + 1
        lr_t = lr * math.sqrt(1 - beta2**t) / (1 - beta1**t)  # folds in the bias corrections
        w = w - lr_t * m / (np.sqrt(v) + self.eps)
        return w, {"m": m, "v": v, "t": t}


class AdaGrad(_ArrayState):
    """AdaGrad (MatConvNet's ``solver.adagrad``): steps scaled by the accumulated squared derivatives.

    Parameters
    ----------
    epsilon : 1e-10
        Added to the root of the accumulated squares.
    rho : 1.0
        Decay of the accumulated squares (1: none, the original AdaGrad).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.solvers import AdaGrad
    >>> AdaGrad().step(np.zeros(2), np.zeros(2), np.array([3.0, -4.0]), 0.1)
    (array([-0.1,  0.1]), array([ 9., 16.]))
    """

    name = "adagrad"
    defaults = {"epsilon": 1e-10, "rho": 1.0}

    def __init__(self, epsilon=1e-10, rho=1.0):
        super().__init__(epsilon=epsilon, rho=rho)

    def step(self, w, state, g, lr):
        """One AdaGrad step; returns ``(w, accumulated squares)``.

        Examples
        --------
        >>> import numpy as np
        >>> from cnnx.solvers import AdaGrad
        >>> AdaGrad(epsilon=0.0).step(np.ones(1), np.full(1, 3.0), np.ones(1), 1.0)
        (array([0.5]), array([4.]))
        """
        g_sqr = state * self.rho + g * g
        return w - lr * g / (np.sqrt(g_sqr) + self.epsilon), g_sqr


class AdaDelta(_StructState):
    """AdaDelta (MatConvNet's ``solver.adadelta``), which sets its own step: the rate is unused.

    Parameters
    ----------
    epsilon : 1e-6
        Added to both running averages under the root.
    rho : 0.9
        Decay of the running averages of the squared derivatives and steps.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.solvers import AdaDelta
    >>> solver = AdaDelta()
    >>> w, state = solver.step(np.zeros(1), solver.init_state(np.zeros(1)), np.ones(1), 123.0)
    >>> sorted(state)
    ['delta_sqr', 'g_sqr']
    """

    name = "adadelta"
    defaults = {"epsilon": 1e-6, "rho": 0.9}
    _arrays = ("g_sqr", "delta_sqr")

    def __init__(self, epsilon=1e-6, rho=0.9):
        super().__init__(epsilon=epsilon, rho=rho)

    def step(self, w, state, g, lr):
        """One AdaDelta step (``lr`` is ignored); returns ``(w, {'g_sqr': ..., 'delta_sqr': ...})``.

        Examples
        --------
        >>> import numpy as np
        >>> from cnnx.solvers import AdaDelta
        >>> state = {"g_sqr": np.zeros(1), "delta_sqr": np.zeros(1)}
        >>> AdaDelta(epsilon=0.01, rho=0.0).step(np.zeros(1), state, np.ones(1), 0.0)[0]
        array([-0.09950372])
        """
        rho, eps = self.rho, self.epsilon
        g_sqr = state["g_sqr"] * rho + g * g * (1 - rho)
        delta = -np.sqrt((state["delta_sqr"] + eps) / (g_sqr + eps)) * g  # sets its own step: lr unused
        delta_sqr = state["delta_sqr"] * rho + delta * delta * (1 - rho)
        return w + delta, {"g_sqr": g_sqr, "delta_sqr": delta_sqr}


class RMSProp(_ArrayState):
    """RMSProp (MatConvNet's ``solver.rmsprop``): steps scaled by a running mean of squared derivatives.

    Parameters
    ----------
    epsilon : 1e-8
        Added to the root of the running mean.
    rho : 0.99
        Decay of the running mean.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.solvers import RMSProp
    >>> RMSProp(rho=0.75, epsilon=0.0).step(np.zeros(1), np.zeros(1), np.ones(1), 0.1)
    (array([-0.2]), array([0.25]))
    """

    name = "rmsprop"
    defaults = {"epsilon": 1e-8, "rho": 0.99}

    def __init__(self, epsilon=1e-8, rho=0.99):
        super().__init__(epsilon=epsilon, rho=rho)

    def step(self, w, state, g, lr):
        """One RMSProp step; returns ``(w, running mean of the squares)``.

        Examples
        --------
        >>> import numpy as np
        >>> from cnnx.solvers import RMSProp
        >>> RMSProp(epsilon=0.0, rho=0.0).step(np.ones(1), np.zeros(1), np.full(1, 2.0), 0.5)
        (array([0.5]), array([4.]))
        """
        g_sqr = state * self.rho + g * g * (1 - self.rho)
        return w - lr * g / (np.sqrt(g_sqr) + self.epsilon), g_sqr


class UserSolver(Solver):
    """A user's solver function ``function(w, state, g, solver_opts, lr) -> (w, state)``.

    The state starts at ``0.0`` (MatConvNet's) and is whatever ``function`` returns; a checkpoint
    stores it as it is (it must be something ``save_matconvnet`` can write) and gives back what
    ``load_matconvnet`` reads. The new ``w`` must have the shape and dtype of the old one.

    Parameters
    ----------
    function : callable
        ``function(w, state, g, solver_opts, lr) -> (w, state)``.
    solver_opts : None
        A dict handed to every call (None: ``{}``).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.solvers import UserSolver
    >>> def halve(w, state, g, opts, lr):
    ...     return w - opts["scale"] * lr * g, state + 1
    >>> solver = UserSolver(halve, {"scale": 0.5})
    >>> solver.step(np.ones(2), solver.init_state(np.ones(2)), np.ones(2), 1.0)
    (array([0.5, 0.5]), 1.0)
    """

    name = "custom"

    def __init__(self, function, solver_opts=None):
        if not callable(function):
            raise TypeError(f"UserSolver: function must be callable, got {type(function).__name__}")
        if solver_opts is not None and not isinstance(solver_opts, dict):
            raise TypeError(f"UserSolver: solver_opts must be a dict, got {type(solver_opts).__name__}")
        self.function = function
        self.solver_opts = dict(solver_opts or {})

    @property
    def options(self):
        """The ``solver_opts`` dict handed to the function.

        Examples
        --------
        >>> from cnnx.solvers import UserSolver
        >>> UserSolver(lambda w, s, g, o, lr: (w, s), {"k": 1}).options
        {'k': 1}
        """
        return self.solver_opts

    def __repr__(self):
        return f"UserSolver({getattr(self.function, '__name__', self.function)!s}, {self.solver_opts!r})"

    def init_state(self, w):
        """``0.0``, MatConvNet's initial state.

        Examples
        --------
        >>> from cnnx.solvers import UserSolver
        >>> UserSolver(lambda w, s, g, o, lr: (w, s)).init_state(None)
        0.0
        """
        return 0.0

    def step(self, w, state, g, lr):
        """Call the function; ValueError if the new ``w`` has another shape or dtype.

        Examples
        --------
        >>> import numpy as np
        >>> from cnnx.solvers import UserSolver
        >>> UserSolver(lambda w, s, g, o, lr: (w - lr * g, s)).step(np.ones(1), 0.0, np.ones(1), 0.25)
        (array([0.75]), 0.0)
        """
        w_new, state = self.function(w, state, g, self.solver_opts, lr)
        w_new = np.asarray(w_new)
        if w_new.shape != w.shape or w_new.dtype != w.dtype:
            raise ValueError(f"{_FNAME}: the solver returned an array of shape {w_new.shape} and dtype "
                             f"{w_new.dtype} for a parameter of shape {w.shape} and dtype {w.dtype}")
        return w_new, state

    def saved_state(self, state):
        """The state as the function returned it.

        Examples
        --------
        >>> from cnnx.solvers import UserSolver
        >>> UserSolver(lambda w, s, g, o, lr: (w, s)).saved_state({"n": 3})
        {'n': 3}
        """
        return state

    def restore_state(self, saved, w, where):
        """What the checkpoint holds, as loaded; ``[]``: ``0.0``.

        Examples
        --------
        >>> from cnnx.solvers import UserSolver
        >>> UserSolver(lambda w, s, g, o, lr: (w, s)).restore_state(None, None, "w")
        0.0
        """
        return 0.0 if saved is None else saved


SOLVERS = {"sgd": SGD, "adam": Adam, "adagrad": AdaGrad, "adadelta": AdaDelta, "rmsprop": RMSProp}
