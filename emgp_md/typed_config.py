"""Strict loading of typed config dataclasses: YAML or dict in, checked values out.

Unknown keys are errors; every value is checked against its field's type when the config is built
(a number written as a string, ``lr: "5e-4"``, is converted; anything else of the wrong type is
refused naming the key); :func:`check_choices` and :func:`check_positive` are the checks the
configs' ``__post_init__`` run. The configs themselves live in :mod:`emgp_md.config`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

T = TypeVar("T")


def check_choices(config: Any) -> None:
    """Raise ``ValueError`` naming the key when an enumerated option (``CHOICES``) has another value."""
    for key, allowed in getattr(config, "CHOICES", {}).items():
        value = getattr(config, key)
        if value not in allowed:
            raise ValueError(f"{type(config).__name__}.{key}: {value!r} is not one of {list(allowed)}")


def check_positive(config: Any, positive: tuple[str, ...], non_negative: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming the key when a ``positive`` field is <= 0 or a ``non_negative`` one < 0."""
    for key in positive:
        if getattr(config, key) <= 0:
            raise ValueError(f"{type(config).__name__}.{key} must be > 0, got {getattr(config, key)!r}")
    for key in non_negative:
        if getattr(config, key) < 0:
            raise ValueError(f"{type(config).__name__}.{key} must be >= 0, got {getattr(config, key)!r}")


def type_name(hint: Any) -> str:
    """A type hint as a config error names it (``float or null``)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else type_name(a) for a in args)
    return getattr(hint, "__name__", str(hint))


def coerce(where: str, hint: Any, value: Any) -> Any:
    """``value`` checked against the type ``hint`` of the field ``where`` (``"FinetuneConfig.lr"``).

    Numbers written as strings (YAML reads ``5e-4`` as a string) are converted; an integer is accepted
    where a float belongs; everything else of the wrong type raises ``ValueError`` naming the key.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return coerce(where, option, value)
            except ValueError:
                continue
    elif dataclasses.is_dataclass(hint):
        return from_dict(hint, value)  # type: ignore[arg-type]
    elif hint is bool and isinstance(value, bool):
        return value
    elif hint in (int, float) and not isinstance(value, bool):
        if isinstance(value, int) or (hint is float and isinstance(value, float)):
            return hint(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                pass
            else:
                if hint is float:
                    return number
                if number.is_integer():
                    return int(number)
    elif (hint is str and isinstance(value, str)) or (origin in (dict, list, tuple) and isinstance(value, origin)):
        return value
    raise ValueError(f"{where}: expected {type_name(hint)}, got {value!r} ({type(value).__name__})")


def from_dict(cls: type[T], data: dict[str, Any] | None) -> T:
    """Build a dataclass from a dict, recursing into nested dataclasses.

    Raises
    ------
    ValueError
        On an unknown key (named in the message) or a value that is not a mapping (a config error,
        reported like every other one).
    """
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown key(s) {unknown}; known keys are {sorted(names)}")
    hints = get_type_hints(cls)
    kwargs = {key: coerce(f"{cls.__name__}.{key}", hints[key], value) for key, value in data.items()}
    return cls(**kwargs)


def load_yaml(cls: type[T], path: str | Path, overrides: dict[str, Any] | None = None) -> T:
    """Load a dataclass config from YAML; ``overrides`` (top-level keys) win over the file."""
    import yaml

    text = Path(path).read_text()
    data = yaml.safe_load(text) or {}
    data.update(overrides or {})
    return from_dict(cls, data)
