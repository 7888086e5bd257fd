"""Typed configs from YAML: nested dataclasses filled from dicts, with unknown keys refused.

An error names the file and the dotted key, e.g. ``conf/x.yaml: model.qformer.num_qeury: unknown key``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def from_dict(cls: type[T], data: dict | None, where: str) -> T:
    """Build dataclass ``cls`` from ``data``; nested dataclass fields recurse."""
    data = data or {}
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(fields)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        hint = hints[name]
        key = _key(where, name)
        if dataclasses.is_dataclass(hint):
            kwargs[name] = from_dict(hint, value, key)
        else:
            kwargs[name] = check_type(value, hint, key)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from e


def _key(where: str, name: str) -> str:
    """``file: a.b.c``: the file once, then the dotted key."""
    return f"{where}.{name}" if ": " in where else f"{where}: {name}"


class _Mismatch(Exception):
    pass


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return "null"
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in (list, tuple, dict):
        return f"a {origin.__name__}" + (f" of {', '.join(_describe(a) for a in args)}" if args else "")
    name = getattr(hint, "__name__", str(hint))
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _convert(value: Any, hint: Any) -> Any:
    """``value`` as type ``hint`` (the few lossless conversions YAML needs), or _Mismatch."""
    if hint is Any:
        return value
    if hint is type(None):
        if value is None:
            return None
        raise _Mismatch
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        for a in sorted(args, key=lambda a: a is str):  # a number-like string is taken as a number first
            try:
                return _convert(value, a)
            except _Mismatch:
                pass
        raise _Mismatch
    if origin is typing.Literal:
        if value in args:
            return value
        raise _Mismatch
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if hint in (int, float):
        if isinstance(value, str):
            # YAML 1.1 reads 3e-4 (no dot) as a string; take it as the number it is meant to be.
            try:
                value = float(value)
            except ValueError:
                raise _Mismatch from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Mismatch
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise _Mismatch  # 2.5 epochs is not 2 epochs: refuse rather than round
            return int(value)
        return float(value)
    if hint is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if hint is list or origin is list:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        return [_convert(v, args[0]) for v in value] if args else list(value)
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise _Mismatch
        return value
    if isinstance(hint, type):
        if isinstance(value, hint):
            return value
        raise _Mismatch
    return value  # a hint this checker does not know: the dataclass's own checks decide


def check_type(value: Any, hint: Any, key: str) -> Any:
    """``value`` checked against (and, for numbers written as strings, converted to) ``hint``;
    a ValueError naming ``key`` (file and dotted key), the value and the expected type otherwise."""
    try:
        return _convert(value, hint)
    except _Mismatch:
        extra = ""
        if typing.get_origin(hint) is list or hint is list:
            if isinstance(value, str):
                extra = f" (write a list: [{value}])"
        raise ValueError(f"{key}: {value!r} is not {_describe(hint)}{extra}") from None


def to_dict(obj: Any) -> Any:
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data
