"""`Space`: class-based sugar for a dict space, as NePS' `PipelineSpace`, with `add`,
`remove` and `add_prior` (which rebuilds the entry and every container that uses it, so
that what was shared stays shared)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from jaxnas.space._parameters import (
    PRIOR_CONFIDENCES,
    ByName,
    Categorical,
    Dynamic,
    Fidelity,
    Float,
    Integer,
    Operation,
    Parameter,
    Resampled,
    _restore_state,
)


class Space(Mapping):
    """Class-based sugar for a dict space, as NePS' `PipelineSpace`.

    Class attributes that are parameters, operations, references, constants or nested
    containers become entries, in definition order (base classes first). Names starting
    with `_` are intermediates: sampled, never passed to the user.

    Example:
        >>> class MySpace(Space):
        ...     lr = Float(1e-4, 1e-1, log=True)
        ...     _width = Integer(16, 128)
        >>> space = MySpace().add(momentum=Float(0.0, 0.99)).remove("lr")
    """

    def __init__(self, entries: Mapping[str, Any] | None = None):
        if entries is None:
            entries = {}
            for klass in reversed(type(self).__mro__):
                if klass is Space or not issubclass(klass, Space):
                    continue
                for name, value in vars(klass).items():
                    if not _is_machinery(name) and not callable_member(value):
                        entries[name] = value
        object.__setattr__(self, "_entries", dict(entries))

    def __getitem__(self, name: str) -> Any:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_entries"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Space is immutable; use space.add(...) or space.remove(...).")

    def __setstate__(self, state: Any) -> None:
        _restore_state(self, state)

    def add(self, **entries: Any) -> Space:
        """Returns a new space with `entries` added.

        Raises:
            ValueError: if a name already exists.
        """
        clash = sorted(set(entries) & set(self._entries))
        if clash:
            raise ValueError(f"Space.add: entries {clash} already exist; remove them first.")
        return type(self)({**self._entries, **entries})

    def remove(self, name: str) -> Space:
        """Returns a new space without the entry `name`.

        Raises:
            KeyError: if there is no such entry.
        """
        if name not in self._entries:
            raise KeyError(f"Space.remove: no entry {name!r}; entries are {list(self._entries)}.")
        return type(self)({k: v for k, v in self._entries.items() if k != name})

    def add_prior(self, name: str, prior: Any, confidence: str = "medium") -> Space:
        """Returns a new space in which the entry `name` carries `prior` (NePS'
        `PipelineSpace.add_prior`); this space is unchanged.

        The entry, a `Float`, `Integer` or `Categorical` (`Bool` included), is rebuilt by
        its own constructor with `prior` and `prior_confidence=confidence`, so every check
        the constructor makes applies. A prior it already has is replaced (NePS refuses
        instead). Wherever the entry's object is used inside other entries (a shared
        width inside an operation, a `.resample()` copy), the rebuilt one takes its
        place, so what was shared stays shared. A dict space gets the method through
        `Space(space).add_prior(...)`.

        Args:
            name: A top-level entry of the space.
            prior: A value in the entry's bounds (on its `step=` grid, if any), or for a
                `Categorical` the index of a choice.
            confidence: "low", "medium" or "high" (see `Float` and `Categorical`).

        Returns:
            A new space of the same type.

        Raises:
            KeyError: no entry `name` (as for `remove`).
            ValueError: an entry that takes no prior (an operation, a constant, a fidelity,
                a reference, a resampled copy, ...), an unknown `confidence`, or a prior the
                entry's constructor refuses (outside the bounds, off the grid, an index out
                of range).
            TypeError: a prior of the wrong type (None, a string, a float index).

        Example:
            >>> space = Space({"lr": Float(1e-5, 1e-1, log=True)})
            >>> space = space.add_prior("lr", 1e-3, confidence="high")
        """
        if name not in self._entries:
            raise KeyError(f"Space.add_prior: no entry {name!r}; entries are "
                           f"{list(self._entries)}.")
        owner = f"Space.add_prior({name!r}, prior={prior!r})"
        entry = self._entries[name]
        if not isinstance(entry, (Float, Integer, Categorical)):
            raise ValueError(f"{owner}: the entry is {entry!r}, which takes no prior: "
                             f"{_why_no_prior(entry)}")
        if confidence not in PRIOR_CONFIDENCES:
            raise ValueError(f"{owner}: confidence={confidence!r} is not one of "
                             f"{PRIOR_CONFIDENCES}.")
        if prior is None:
            raise TypeError(f"{owner}: None is no prior; give a value (for a Categorical, "
                            f"the index of a choice).")
        try:
            rebuilt = _with_prior(entry, prior, confidence)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{owner}: {error}{_index_hint(entry, prior)}") from None
        return type(self)(_replace_object(self._entries, entry, rebuilt))

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self._entries.items())
        return f"{type(self).__name__}({body})"


def _why_no_prior(entry: Any) -> str:
    """Why `Space.add_prior` cannot give `entry` a prior, and where the prior goes instead."""
    if isinstance(entry, Fidelity):
        return "the optimiser sets the fidelity; it is never sampled."
    if isinstance(entry, Resampled):
        return "a resampled copy draws from its source's prior; give the source the prior."
    if isinstance(entry, ByName):
        return f"it refers to the entry {entry.name!r}; give that entry the prior."
    if isinstance(entry, (Operation, Dynamic)):
        return ("it decides nothing itself; give the prior to a parameter it uses, as a "
                "top-level entry.")
    if isinstance(entry, (Mapping, list, tuple)):
        return "add_prior takes a top-level Float, Integer or Categorical, not a container."
    return "a constant decides nothing; only a Float, Integer or Categorical takes a prior."


def _index_hint(entry: Any, prior: Any) -> str:
    """For a `Categorical` given one of its choices as the prior: which index to give."""
    if not isinstance(entry, Categorical) or not isinstance(prior, (str, bool, float)):
        return ""
    for index, choice in enumerate(entry.choices):
        if type(choice) is type(prior) and choice == prior:
            return f" {prior!r} is choice {index}: give prior={index}."
    return ""


def _with_prior(param: Float | Integer | Categorical, prior: Any, confidence: str) -> Parameter:
    """`param` rebuilt by its own constructor with a new prior (which checks it)."""
    if isinstance(param, Categorical):
        return type(param)(param.choices, prior=prior, prior_confidence=confidence,
                           static=param.static)
    return type(param)(param.lower, param.upper, log=param.log, prior=prior,
                       prior_confidence=confidence, static=param.static, step=param.step)


def _replace_object(entries: Mapping[str, Any], old: Any, new: Any) -> dict[str, Any]:
    """`entries` with every occurrence of the object `old` (by identity) replaced by `new`.

    What contains `old` is rebuilt, once however often it is used, so that sharing (which
    the compiler reads from identity) is kept; everything else is kept as the same object.
    """
    rebuilt: dict[int, Any] = {id(old): new}

    def walk(obj: Any) -> Any:
        if id(obj) not in rebuilt:
            rebuilt[id(obj)] = _rebuild(obj, walk)
        return rebuilt[id(obj)]

    return {name: walk(value) for name, value in entries.items()}


def _rebuild(obj: Any, walk: Callable[[Any], Any]) -> Any:
    """`obj` with `walk` applied to its parts; `obj` itself when no part changed."""
    if isinstance(obj, Operation):
        args, kwargs = walk(obj.args), {k: walk(v) for k, v in obj.kwargs.items()}
        changed = args is not obj.args or any(kwargs[k] is not v for k, v in obj.kwargs.items())
        return Operation(obj.operator, args, kwargs, name=obj.name) if changed else obj
    if isinstance(obj, Categorical):
        choices = tuple(walk(c) for c in obj.choices)
        if all(a is b for a, b in zip(choices, obj.choices)):
            return obj
        return type(obj)(choices, prior=obj.prior, prior_confidence=obj.prior_confidence,
                         static=obj.static)
    if isinstance(obj, Dynamic):
        params = {k: walk(v) for k, v in obj.params.items()}
        changed = any(params[k] is not v for k, v in obj.params.items())
        return Dynamic(obj.fn, **params) if changed else obj
    if isinstance(obj, Resampled):
        source = walk(obj.source)
        return obj if source is obj.source else Resampled(source)
    if isinstance(obj, Mapping):
        items = {k: walk(v) for k, v in obj.items()}
        if all(items[k] is v for k, v in obj.items()):
            return obj
        return type(obj)(items) if isinstance(obj, Space) else items
    if isinstance(obj, (tuple, list)):
        items = [walk(item) for item in obj]
        if all(a is b for a, b in zip(items, obj)):
            return obj
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    return obj


def _is_machinery(name: str) -> bool:
    """Class attributes that Python or `abc` add, never space entries."""
    return (name.startswith("__") and name.endswith("__")) or name.startswith("_abc_")


def callable_member(value: Any) -> bool:
    """True for methods, properties and the like defined on a `Space` subclass."""
    if isinstance(value, (Parameter, type)):
        return False
    return isinstance(value, (staticmethod, classmethod, property)) or (
        callable(value) and hasattr(value, "__get__")
    )
