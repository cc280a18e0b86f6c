"""The search-space language: parameters, operations and references (the class-based
`Space` sugar is in `_space.py`).

These objects only *describe* a space; `jaxnas.compile` turns a pytree of them into a
fixed-shape `SearchSpace`. Semantics follow NePS Spaces:

* reusing the same parameter object in several places shares one sampled value;
* `param.resample()` (or `Resampled(param)`) is an independently sampled copy. The copy is
  shallow, as in NePS: objects nested in the source are still shared unless they are
  themselves resampled, and a nested `.resample()` is drawn anew in every copy;
* `ByName("name")` refers to another top-level entry of the space (itself included), which
  with `.resample()` gives grammar-like recursion.

Every rule that can be checked on a parameter alone is checked here, when it is defined, so
the error points at the user's line. Rules that need the whole space (references, recursion,
fidelity placement, size) are checked by `jaxnas.compile`, which names the path.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from jaxnas.space import _registry

PRIOR_CONFIDENCES = ("low", "medium", "high")


class Parameter:
    """Base class of every object that `jaxnas.compile` resolves (not a public name)."""

    __slots__ = ()

    def resample(self) -> Resampled:
        """Returns an independently sampled copy of this parameter."""
        return Resampled(self)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; build a new one instead.")

    def _set(self, **fields: Any) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __setstate__(self, state: Any) -> None:
        _restore_state(self, state)


def _restore_state(obj: Any, state: Any) -> None:
    """Unpickling for immutable objects: pickle's state is a dict, or `(dict, slots)`."""
    parts = state if isinstance(state, tuple) else (state,)
    for part in parts:
        for name, value in (part or {}).items():
            object.__setattr__(obj, name, value)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


# Integers are encoded through float32 in the unit cube: keep them exactly representable.
MAX_INTEGER = 2**24


def _check_bounds(owner: str, lower: Any, upper: Any, *, integer: bool) -> None:
    for name, value in (("lower", lower), ("upper", upper)):
        if not _is_real(value):
            raise TypeError(f"{owner}: {name}={value!r} must be a real number.")
        if not math.isfinite(value):
            raise ValueError(f"{owner}: {name}={value!r} must be finite.")
        if integer and float(value) != int(value):
            raise ValueError(f"{owner}: {name}={value!r} must be a whole number.")
        if integer and abs(value) > MAX_INTEGER:
            raise ValueError(f"{owner}: {name}={value!r} exceeds the integer range "
                             f"+-2**24 (values pass through float32).")


def _check_confidence(owner: str, prior_confidence: Any) -> None:
    if prior_confidence not in PRIOR_CONFIDENCES:
        raise ValueError(
            f"{owner}: prior_confidence={prior_confidence!r} is not one of "
            f"{PRIOR_CONFIDENCES}."
        )


class _Numeric(Parameter):
    """Shared validation and fields of `Float` and `Integer`."""

    __slots__ = ("lower", "upper", "log", "prior", "prior_confidence", "static", "step")
    _integer = False

    def __init__(self, lower, upper, *, log=False, prior=None, prior_confidence="medium",
                 static=False, step=None):
        owner = f"{type(self).__name__}(lower={lower!r}, upper={upper!r})"
        _check_bounds(owner, lower, upper, integer=self._integer)
        if not lower < upper:
            raise ValueError(f"{owner}: lower must be less than upper.")
        if log and lower <= 0:
            raise ValueError(f"{owner}: log=True needs lower > 0, got lower={lower!r}.")
        if prior is not None:
            if not _is_real(prior) or not math.isfinite(prior):
                raise TypeError(f"{owner}: prior={prior!r} must be a finite real number.")
            if not lower <= prior <= upper:
                raise ValueError(
                    f"{owner}: prior={prior!r} lies outside the bounds [{lower!r}, {upper!r}]."
                )
            if self._integer and float(prior) != int(prior):
                raise ValueError(f"{owner}: prior={prior!r} must be a whole number.")
        _check_confidence(owner, prior_confidence)
        cast = int if self._integer else float
        step = _checked_step(owner, step, lower, upper, log, prior, integer=self._integer)
        self._set(
            lower=cast(lower), upper=cast(upper), log=bool(log),
            prior=None if prior is None else cast(prior),
            prior_confidence=prior_confidence, static=bool(static), step=step,
        )

    @property
    def quantum(self) -> float:
        """The spacing of the values: `step`, 1 for an `Integer` without one, 0 for a
        continuous `Float`."""
        if self.step is not None:
            return self.step
        return 1 if self._integer else 0.0

    def grid(self, ks: Any) -> np.ndarray:
        """The values `lower + k * step` for the whole numbers `ks` (numpy), as the space
        stores them: int64 for an `Integer`, float32 for a `Float`.

        Raises:
            ValueError: a `Float` without a step (its values form no grid).
        """
        ks = np.asarray(ks, np.int64)
        if not self.quantum:
            raise ValueError(f"{self!r}: grid() needs a step; this Float is continuous.")
        if self._integer:
            return self.lower + ks * self.quantum
        lower, upper = np.float32(self.lower), np.float32(self.upper)  # as the space snaps
        return np.clip(lower + ks.astype(np.float32) * np.float32(self.step), lower, upper)

    def __setstate__(self, state: Any) -> None:
        object.__setattr__(self, "step", None)  # pickled before `step` existed
        _restore_state(self, state)

    def __repr__(self) -> str:
        extras = "".join(
            f", {name}={getattr(self, name)!r}"
            for name, default in (("log", False), ("step", None), ("prior", None),
                                  ("static", False))
            if getattr(self, name) != default
        )
        if self.prior is not None:
            extras += f", prior_confidence={self.prior_confidence!r}"
        return f"{type(self).__name__}({self.lower!r}, {self.upper!r}{extras})"


def _checked_step(owner: str, step: Any, lower: Any, upper: Any, log: bool, prior: Any, *,
                  integer: bool) -> Any:
    """`step` validated: None, or a positive number (whole for an `Integer`) that divides
    `upper - lower`, with `prior` on its grid; an `Integer`'s step 1 is stored as None."""
    if step is None:
        return None
    if not _is_real(step) or not math.isfinite(step) or step <= 0:
        raise ValueError(f"{owner}: step={step!r} must be a positive finite number.")
    if integer and float(step) != int(step):
        raise ValueError(f"{owner}: step={step!r} must be a whole number for an Integer.")
    step = int(step) if integer else float(step)
    if integer and step == 1:
        return None  # every integer: the same as no step
    if log:
        raise ValueError(f"{owner}: step={step!r} cannot be combined with log=True (the "
                         f"values of a step are evenly spaced; drop one of the two).")
    span = float(upper) - float(lower)
    count = round(span / step)
    if count < 1 or abs(count * step - span) > 1e-9 * max(abs(span), 1.0):
        fitted = float(lower) + max(math.floor(span / step + 1e-9), 1) * step
        example = int(fitted) if integer else _tidy(fitted)
        raise ValueError(f"{owner}: step={step!r} must divide upper - lower = {span!r} into "
                         f"whole steps (e.g. upper={example!r}).")
    if prior is not None:
        k = (float(prior) - float(lower)) / step
        if abs(k - round(k)) > 1e-6:
            below = float(lower) + math.floor(k) * step
            raise ValueError(f"{owner}: prior={prior!r} is not on the grid of step={step!r} "
                             f"from lower={lower!r}; the nearest values are "
                             f"{_tidy(below)!r} and {_tidy(below + step)!r}.")
    return step


def _tidy(x: float) -> float:
    """`x` without float noise, for messages (0.30000000000000004 -> 0.3)."""
    return float(f"{x:.12g}")


class Float(_Numeric):
    """A real-valued parameter in the closed interval `[lower, upper]`.

    Args:
        lower: Inclusive lower bound, finite.
        upper: Inclusive upper bound, finite and greater than `lower`.
        log: Sample uniformly in log space (needs `lower > 0`).
        prior: A value in `[lower, upper]` believed to be good.
        prior_confidence: "low", "medium" or "high": the prior is a normal truncated to
            the (log-)unit interval with sigma 0.5, 0.25 or 0.125 (PriorBand, Sec. 5).
        static: Mark the value as structure-changing (it then picks the bucket). Values
            inside an `Operation` are always static.
        step: Only the values `lower + k * step` (Optuna's and Hypernets' `step`); it must
            divide `upper - lower` into whole steps, cannot be combined with `log`, and a
            prior must be one of the values. Sampling, priors, the unit encoding and every
            optimiser treat the parameter as discrete, like an `Integer`.

    Raises:
        ValueError: non-finite bounds, `lower >= upper`, `log` with `lower <= 0`, a prior
            outside the bounds, an unknown `prior_confidence`, or a `step` that is not
            positive, does not divide the range, comes with `log`, or misses the prior.

    Example:
        >>> lr = Float(1e-5, 1e-1, log=True, prior=1e-3, prior_confidence="high")
    """

    __slots__ = ()


class Integer(_Numeric):
    """An integer parameter in the closed interval `[lower, upper]`; both ends reachable.

    Arguments are as for `Float`; bounds, prior and `step` must be whole numbers.

    Example:
        >>> channels = Integer(16, 128, step=16)  # 16, 32, ..., 128
    """

    __slots__ = ()
    _integer = True


def Bool(*, prior: bool | None = None, prior_confidence: str = "medium") -> Categorical:  # noqa: N802
    """A boolean parameter (Hypernets' `Bool`): a `Categorical` over `(False, True)`.

    Args:
        prior: The value believed to be good, or None.
        prior_confidence: As for `Categorical`.
    """
    if prior is not None and not isinstance(prior, bool):
        raise TypeError(f"Bool(prior={prior!r}): prior must be True, False or None.")
    return Categorical(
        (False, True), prior=None if prior is None else int(prior),
        prior_confidence=prior_confidence,
    )


class Categorical(Parameter):
    """A choice among constants, parameters, operations, or tuples of them.

    Args:
        choices: A non-empty list or tuple. If one choice is a tuple, all must be (a choice
            of argument lists, as NePS requires). Choices may be parameters, but the
            choices as a whole cannot be another parameter's value (NePS allows it; here a
            compiled space fixes their number): pick from such a value with a `Dynamic`.
        prior: The index of the choice believed to be good, or None.
        prior_confidence: "low", "medium" or "high": the prior choice weighs 2, 4 or 6
            against 1 for every other choice (PriorBand, Sec. 5).
        static: Whether the choice changes program structure. By default a choice among
            plain numbers is a traced value and any other choice is static; anything
            inside an `Operation` is static.

    Raises:
        TypeError: choices that are not a list or tuple (a parameter, a `ByName`: the
            message shows the `Dynamic` to write instead), or a prior that is not an int.
        ValueError: empty choices, tuple and non-tuple choices mixed, a prior index out of
            range, or an unknown `prior_confidence`.
    """

    __slots__ = ("choices", "prior", "prior_confidence", "static")

    def __init__(self, choices, *, prior=None, prior_confidence="medium", static=None):
        if isinstance(choices, Parameter):
            raise TypeError(_choices_from_parameter(choices))
        if isinstance(choices, (str, bytes, Mapping)) or not isinstance(choices, Sequence):
            raise TypeError(
                f"Categorical(choices={choices!r}): choices must be a list or tuple."
            )
        choices = tuple(choices)
        owner = f"Categorical(choices={_short(choices)})"
        if not choices:
            raise ValueError(f"{owner}: choices must not be empty.")
        tuples = [isinstance(c, tuple) for c in choices]
        if any(tuples) and not all(tuples):
            raise ValueError(
                f"{owner}: if one choice is a tuple, all choices must be tuples "
                f"(choice {tuples.index(not tuples[0])} differs from choice 0)."
            )
        if prior is not None:
            if isinstance(prior, bool) or not isinstance(prior, numbers.Integral):
                raise TypeError(f"{owner}: prior={prior!r} must be an index (int).")
            if not 0 <= prior < len(choices):
                raise ValueError(
                    f"{owner}: prior={prior!r} is out of range for {len(choices)} choices "
                    f"(valid indices 0..{len(choices) - 1})."
                )
        _check_confidence(owner, prior_confidence)
        if static is not None and not isinstance(static, bool):
            raise TypeError(f"{owner}: static={static!r} must be True, False or None.")
        self._set(choices=choices, prior=None if prior is None else int(prior),
                  prior_confidence=prior_confidence, static=static)

    def __repr__(self) -> str:
        extras = "" if self.prior is None else (
            f", prior={self.prior}, prior_confidence={self.prior_confidence!r}")
        return f"Categorical({_short(self.choices)}{extras})"


def _choices_from_parameter(choices: Parameter) -> str:
    """The error for a `Categorical` whose choices are another parameter's value (which NePS
    allows), with the `Dynamic` that says the same in a fixed-shape space."""
    source = f"jn.ByName({choices.name!r})" if isinstance(choices, ByName) else "<it>"
    return (
        f"Categorical(choices={choices!r}): choices must be a list or tuple written out, not "
        f"another parameter: a compiled space fixes how many choices a Categorical has, so "
        f"they cannot come from another parameter's value. Pick from that value with "
        f"jn.Dynamic and an Integer index instead, e.g. jn.Dynamic(lambda options, index: "
        f"options[index % len(options)], options={source}, index=jn.Integer(0, 3)), the "
        f"index's upper bound being one less than the most options the value can hold."
    )


class Fidelity(Parameter):
    """The fidelity (budget) of an evaluation: epochs, steps, data fraction...

    It is not sampled: the optimiser sets it. Integer when both bounds are ints.
    A space has at most one, as a direct entry (not inside an operation or a choice).

    Args:
        lower: Smallest fidelity, > 0.
        upper: Largest fidelity, > lower.
    """

    __slots__ = ("lower", "upper", "is_integer")

    def __init__(self, lower, upper, *, integer: bool | None = None):
        if integer is None:
            integer = isinstance(lower, numbers.Integral) and isinstance(upper, numbers.Integral)
        owner = f"{type(self).__name__}(lower={lower!r}, upper={upper!r})"
        _check_bounds(owner, lower, upper, integer=integer)
        if not 0 < lower < upper:
            raise ValueError(f"{owner}: bounds must satisfy 0 < lower < upper.")
        cast = int if integer else float
        self._set(lower=cast(lower), upper=cast(upper), is_integer=bool(integer))

    def resample(self) -> Resampled:
        raise TypeError(f"{self!r}: a fidelity cannot be resampled; the optimiser sets it.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.lower!r}, {self.upper!r})"


class IntegerFidelity(Fidelity):
    """An integer fidelity in `[lower, upper]` (e.g. epochs)."""

    __slots__ = ()

    def __init__(self, lower, upper):
        super().__init__(lower, upper, integer=True)


class FloatFidelity(Fidelity):
    """A real fidelity in `[lower, upper]` (e.g. a data fraction)."""

    __slots__ = ()

    def __init__(self, lower, upper):
        super().__init__(lower, upper, integer=False)


class Operation(Parameter):
    """An operator applied to (possibly searched) arguments: a layer, a block, a function.

    Args:
        operator: A callable (a Flax module class, a function or a class), or the name of
            a block in `jaxnas.nn` (`"Sequential"`, `"Residual"`, ...).
        args: Positional arguments: a tuple, or a parameter (e.g. a `Categorical` of
            tuples) that resolves to one.
        kwargs: Keyword arguments; values may be parameters and operations.
        name: Optional scope name. `spec.resolve(config, build=False)` names each
            resolved operation by its path, which `jn.nn.build` uses for module names.

    Every decision inside an operation is static: it changes the program's structure.
    """

    __slots__ = ("operator", "args", "kwargs", "name")

    def __init__(self, operator: Callable | str, args: Any = (), kwargs: Mapping | None = None,
                 *, name: str | None = None):
        if isinstance(operator, str):
            operator = _registry.block(operator)
        if isinstance(operator, Parameter) or not callable(operator):
            raise TypeError(
                f"Operation(operator={operator!r}): operator must be a callable (a Flax "
                f"module class, a function or a class)."
            )
        if isinstance(args, list):
            args = tuple(args)
        if not isinstance(args, (tuple, Parameter)):
            args = (args,)
        kwargs = {} if kwargs is None else kwargs
        if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
            raise TypeError(
                f"Operation({_name(operator)}): kwargs must be a mapping with string keys, "
                f"got {kwargs!r}."
            )
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Operation({_name(operator)}): name={name!r} must be a string.")
        self._set(operator=operator, args=args, kwargs=dict(kwargs), name=name)

    def __repr__(self) -> str:
        return f"Operation({_name(self.operator)}, args={self.args!r}, kwargs={self.kwargs!r})"

    def __str__(self) -> str:
        """As a call: `Sequential([Dense(71), relu, Dense(10)])`; `relu` for no arguments."""
        if not self.args and not self.kwargs:
            return _name(self.operator)
        args = self.args if isinstance(self.args, tuple) else (self.args,)
        parts = [_call_text(a) for a in args]
        parts += [f"{k}={_call_text(v)}" for k, v in self.kwargs.items()]
        return f"{_name(self.operator)}({', '.join(parts)})"


def _call_text(value: Any) -> str:
    """`str` for operations, inside lists and tuples too; `repr` for everything else."""
    if isinstance(value, list):
        return f"[{', '.join(map(_call_text, value))}]"
    if isinstance(value, tuple):
        return f"({', '.join(map(_call_text, value))}{',' if len(value) == 1 else ''})"
    return str(value) if isinstance(value, Operation) else repr(value)


class Constant:
    """A value kept as it is: the space passes `value` on unchanged and decides nothing.

    Any value that is not a parameter is a constant already; `Constant` says so where a
    bare tuple or list would read as a range or a choice (`jn.compile` refuses
    `{"lr": (1e-4, 1e-1)}` and asks for `jn.Float(1e-4, 1e-1)`, or for
    `jn.Constant((1e-4, 1e-1))` when the tuple itself is meant).

    Args:
        value: Any value; it is resolved as itself.

    Example:
        >>> space = {"betas": Constant((0.9, 0.999)), "lr": Float(1e-4, 1e-1, log=True)}
    """

    __slots__ = ("value",)

    def __init__(self, value: Any):
        if isinstance(value, (Parameter, Constant)):
            raise TypeError(f"Constant({value!r}): a constant holds a plain value, not a "
                            f"parameter (use the parameter itself).")
        object.__setattr__(self, "value", value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Constant is immutable; build a new one instead.")

    def __setstate__(self, state: Any) -> None:
        _restore_state(self, state)

    def __repr__(self) -> str:
        return f"Constant({self.value!r})"


class Resampled(Parameter):
    """An independently sampled copy of `source` (NePS' `Resampled`, HANNAH's `.new()`).

    Args:
        source: A parameter, an operation, or a `ByName` reference.
    """

    __slots__ = ("source",)

    def __init__(self, source: Any):
        if isinstance(source, str):
            source = ByName(source)
        if isinstance(source, Resampled):
            source = source.source
        if isinstance(source, Fidelity) or not isinstance(source, Parameter):
            raise TypeError(
                f"Resampled({source!r}): only parameters, operations and ByName references "
                f"can be resampled."
            )
        self._set(source=source)

    def __repr__(self) -> str:
        return f"{self.source!r}.resample()"


class ByName(Parameter):
    """A reference to the top-level entry `name` of the space, for self and forward references.

    `ByName("x")` shares the entry's value; `ByName("x").resample()` is a fresh copy, which
    is how a rule refers to itself recursively.
    """

    __slots__ = ("name",)

    def __init__(self, name: str):
        if not isinstance(name, str) or not name:
            raise TypeError(f"ByName({name!r}): name must be a non-empty string.")
        self._set(name=name)

    def __repr__(self) -> str:
        return f"ByName({self.name!r})"


class Dynamic(Parameter):
    """A value computed from other parameters (Hypernets' `Dynamic`).

    A `Dynamic` makes no decision of its own: it is evaluated wherever it is used, and its
    inputs follow the usual rules (shared objects share, `.resample()` draws anew per use).

    Args:
        fn: Called with the resolved values as keyword arguments.
        **params: Parameters, operations or constants passed to `fn`.

    Example:
        >>> units = Dynamic(lambda units, factor: int(units * factor),
        ...                 units=Categorical((64, 128)), factor=Float(0.5, 1.0))
    """

    __slots__ = ("fn", "params")

    def __init__(self, fn: Callable[..., Any], **params: Any):
        if not callable(fn):
            raise TypeError(f"Dynamic(fn={fn!r}): fn must be callable.")
        self._set(fn=fn, params=params)

    def __repr__(self) -> str:
        return f"Dynamic({_name(self.fn)}, {self.params!r})"


def _name(operator: Any) -> str:
    return getattr(operator, "__qualname__", None) or repr(operator)


def _short(choices: tuple, limit: int = 60) -> str:
    text = repr(choices)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def __getattr__(name: str) -> Any:
    """`Space` moved to `_space.py`; run folders pickled before then name it here."""
    if name == "Space":  # tests/space/data/space_before_the_split.pickle
        from jaxnas.space._space import Space
        return Space
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
