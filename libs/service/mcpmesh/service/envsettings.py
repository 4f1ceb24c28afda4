"""A service's own settings from its environment variables: one frozen dataclass, one prefix.

    @dataclass(frozen=True)
    class LogsSettings:
        max_blobs: int = 5000
        allow_http: bool = False

        @classmethod
        def from_env(cls, environ=None) -> LogsSettings:
            return settings_from_env(cls, "LOGS_", environ)

Each field set as `<PREFIX><FIELD>` (non-empty) is parsed to its annotated type: `str`
(stripped), `bool` (1/true/yes/on or 0/false/no/off), `int`, `float`, or JSON for `list`/`dict`
fields; unset fields keep their defaults, validation stays in the class's `__post_init__`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from collections.abc import Collection, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_READ = (str, bool, int, float, list, dict)


def settings_from_env(
    cls: type[T],
    prefix: str,
    environ: Mapping[str, str] | None = None,
    *,
    skip: Collection[str] = (),
    **given: Any,
) -> T:
    """`cls(...)` from the environment (`os.environ` unless given). Fields in `skip` are not
    read (the class derives them); `given` values win (e.g. a table read from a file). A value
    that does not parse is a ValueError naming the variable (numbers and booleans are echoed;
    text and JSON never are: they may hold a secret)."""
    env = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in skip or f.name in given:
            continue
        name = prefix + f.name.upper()
        if (typing.get_origin(hints[f.name]) or hints[f.name]) not in _READ:
            raise TypeError(f"{name}: a {hints[f.name]!r} setting is not read from the environment: skip it")
        raw = env.get(name, "").strip()
        if raw:
            values[f.name] = parse_value(name, raw, hints[f.name])
    return cls(**values, **given)


def parse_value(name: str, raw: str, kind: Any) -> Any:
    """`raw` (the value of variable `name`) as a `kind`: str, bool, int, float, list or dict."""
    origin = typing.get_origin(kind) or kind
    if origin is str:
        return raw
    if origin is bool:
        if raw.lower() not in _TRUE + _FALSE:
            raise ValueError(f"{name}={raw!r} is not a valid bool (use true or false)")
        return raw.lower() in _TRUE
    if origin in (int, float):
        try:
            return origin(raw)
        except ValueError:
            raise ValueError(f"{name}={raw!r} is not a valid {origin.__name__}") from None
    if origin in (list, dict):
        shape = "list" if origin is list else "object"
        try:
            value = json.loads(raw)
        except ValueError:
            raise ValueError(f"{name} is not valid JSON (expected a JSON {shape})") from None
        if not isinstance(value, origin):
            raise ValueError(f"{name} must be a JSON {shape}")
        return value
    raise TypeError(f"{name}: settings of type {kind!r} are not read from the environment: skip it")
