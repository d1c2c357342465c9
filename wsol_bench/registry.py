"""Named, pluggable parts (saliency methods, box extractors, metrics, models) and their parameters.

A part is a dataclass whose fields are its parameters; :func:`make_params` builds one from
a plain mapping (a config section), checking every key, type and range, and each message
names the key (``segmentation.fg_quantile=1.5: must be in (bg_quantile, 1]``).

A :class:`Registry` maps names to parts. Built-in parts are listed by name and imported
only when asked for; a user's own part is named by its import path,
``package.module:ClassName``, or registered with :meth:`Registry.register`.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class ParameterError(ValueError):
    """A parameter outside its allowed range; :func:`make_params` adds the section name."""

    def __init__(self, key: str, value: object, requirement: str) -> None:
        self.key, self.value, self.requirement = key, value, requirement
        super().__init__(f"{key}={value!r}: must be {requirement}")


def require(ok: bool, key: str, value: object, requirement: str) -> None:
    """Raise :class:`ParameterError` for ``key`` unless ``ok``."""
    if not ok:
        raise ParameterError(key, value, requirement)


def make_params(cls: type[T], values: Mapping[str, Any] | None, where: str) -> T:
    """An instance of dataclass ``cls`` from ``values``, checked key by key.

    Unknown keys, values of the wrong type and out-of-range values (checked by the
    dataclass's ``__post_init__`` with :func:`require`) raise ``ValueError`` naming
    ``<where>.<key>``. Integers are accepted for float fields; nothing else is converted.
    """
    values = dict(values or {})
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{where}: {cls!r} is not a dataclass of parameters")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields)) or "none"
        raise ValueError(f"{where}.{unknown[0]}: not a parameter of {cls.__name__} (its parameters: {known})")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints.get(k, Any), f"{where}.{k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ParameterError as err:
        raise ValueError(f"{where}.{err}") from None


def params_dict(obj: object) -> dict[str, Any]:
    """The parameters of a dataclass instance as plain JSON-able values (tuples as lists)."""
    return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}  # type: ignore[arg-type]


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # a part inside a part (a wrapped method)
        name = getattr(type(value), "name", "") or f"{type(value).__module__}:{type(value).__qualname__}"
        return {"part": name, "params": params_dict(value)}
    return value


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` checked against the type ``hint``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ValueError:
                pass
        raise ValueError(f"{key}={value!r}: must be {_type_name(hint)}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ValueError(f"{key}={value!r}: must be one of {', '.join(map(repr, args))}")
    if origin in (list, tuple) or hint in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ValueError(f"{key}={value!r}: must be a list")
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin or hint) is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"{key}={value!r}: must be a mapping")
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise ValueError(f"{key}={value!r}: must be {_type_name(hint)}")


def _type_name(hint: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(hint))
    if typing.get_origin(hint) is typing.Literal:
        return " or ".join(repr(a) for a in typing.get_args(hint))
    return names.get(hint, getattr(hint, "__name__", str(hint)))


class Registry(Generic[T]):
    """Parts of one kind by name. ``builtins``: name -> ``'module:attribute'``, imported lazily.

    A registry is a read-only collection of its names: iterating gives them sorted (as
    :meth:`names`), ``len`` counts them, ``name in registry`` asks for a built-in or registered
    name (not an import path ``package.module:Name``, which :meth:`get` also accepts).
    """

    def __init__(self, kind: str, builtins: Mapping[str, str]) -> None:
        self.kind = kind
        self._builtins = dict(builtins)
        self._registered: dict[str, T] = {}

    def names(self) -> list[str]:
        """The built-in and registered names, sorted."""
        return sorted({*self._builtins, *self._registered})

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._builtins.keys() | self._registered.keys())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._builtins or name in self._registered)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: make ``obj`` available as ``name`` (for parts defined at run time)."""

        def add(obj: T) -> T:
            self._registered[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        """The part called ``name``, or the object at import path ``package.module:Name``."""
        if name in self._registered:
            return self._registered[name]
        path = self._builtins.get(name, name)
        if ":" not in path:
            raise ValueError(
                f"{self.kind}={name!r} is not one of {', '.join(self.names())} "
                "(or give your own as package.module:Name)"
            )
        module_name, _, attribute = path.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise ValueError(f"{self.kind}={name!r}: cannot import {module_name} ({err})") from err
        try:
            return getattr(module, attribute)
        except AttributeError:
            raise ValueError(f"{self.kind}={name!r}: {module_name} has no {attribute!r}") from None

    def create(self, name: str, params: Mapping[str, Any] | None, where: str) -> Any:
        """The part ``name`` built from ``params`` with :func:`make_params`."""
        return make_params(self.get(name), params, where)  # type: ignore[arg-type]
