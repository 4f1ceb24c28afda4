"""Arguments that fail a tool's or prompt's schema, told in one clean sentence.

pydantic's own text names the library and its version, links its docs, echoes the input
and names the generated model. A caller reads instead which argument is wrong and what it
should be, e.g. `invalid arguments: last_n: expected an integer; entries[1].content: required`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from pydantic import ValidationError

#: What a value should have been, by pydantic error type (`{name}` is filled from the error's ctx).
_EXPECTED: Final[dict[str, str]] = {
    "missing": "required",
    "missing_argument": "required",
    "extra_forbidden": "not an argument of this {what}",
    "unexpected_keyword_argument": "not an argument of this {what}",
    "unexpected_positional_argument": "not an argument of this {what}",
    "string_type": "expected a string",
    "string_unicode": "expected a string",
    "string_sub_type": "expected a string",
    "string_too_short": "expected at least {min_length} characters",
    "string_too_long": "expected at most {max_length} characters",
    "string_pattern_mismatch": "expected a string matching {pattern}",
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected a whole number",
    "int_parsing_size": "expected a smaller integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "finite_number": "expected a finite number",
    "decimal_type": "expected a number",
    "decimal_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "none_required": "expected null",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "set_type": "expected a list",
    "iterable_type": "expected a list",
    "too_short": "expected at least {min_length} items",
    "too_long": "expected at most {max_length} items",
    "dict_type": "expected an object",
    "model_type": "expected an object",
    "model_attributes_type": "expected an object",
    "dataclass_type": "expected an object",
    "typed_dict_type": "expected an object",
    "literal_error": "expected {expected}",
    "enum": "expected {expected}",
    "greater_than": "expected a number greater than {gt}",
    "greater_than_equal": "expected a number of at least {ge}",
    "less_than": "expected a number less than {lt}",
    "less_than_equal": "expected a number of at most {le}",
    "multiple_of": "expected a multiple of {multiple_of}",
    "uuid_type": "expected a UUID",
    "uuid_parsing": "expected a UUID",
    "url_type": "expected a URL",
    "url_parsing": "expected a URL",
    "datetime_type": "expected an ISO 8601 date-time",
    "datetime_parsing": "expected an ISO 8601 date-time",
    "datetime_from_date_parsing": "expected an ISO 8601 date-time",
    "date_type": "expected an ISO 8601 date",
    "date_parsing": "expected an ISO 8601 date",
    "date_from_datetime_parsing": "expected an ISO 8601 date",
}
#: Steps of an error's location that name a branch of a union (`str`, `list[Entry]`), not a field.
_BRANCH_LABELS: Final = frozenset(
    {"str", "int", "float", "bool", "bytes", "none", "list", "dict", "tuple", "set", "frozenset", "decimal"}
)
_NAME_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_MAX_PROBLEMS: Final = 5
_MAX_DETAIL: Final = 120


def describe_invalid_arguments(exc: ValidationError, *, what: str = "tool") -> str:
    """`invalid arguments: <path>: <what was expected>; ...` for the first few problems.

    Nothing of the input is echoed but argument names (capped), and nothing names pydantic.
    """
    problems: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False, include_input=False):
        path = _path(error["loc"]) or "arguments"
        expected = _expected(error, what)
        if expected not in problems.setdefault(path, []):
            problems[path].append(expected)
    parts = [f"{path}: {_joined(expectations)}" for path, expectations in problems.items()]
    shown = "; ".join(parts[:_MAX_PROBLEMS])
    if len(parts) > _MAX_PROBLEMS:
        shown += f"; and {len(parts) - _MAX_PROBLEMS} more"
    return f"invalid arguments: {shown}. The {what}'s input schema lists each argument and its type"


def _path(loc: Sequence[int | str]) -> str:
    path = ""
    for step in loc:
        if isinstance(step, int):
            path += f"[{step}]"
        elif step in _BRANCH_LABELS or "[" in step or "-" in step:
            continue
        elif _NAME_RE.fullmatch(step):
            path += f".{step}" if path else step
        else:
            path += f"[{step[:40]!r}]" if len(step) <= 40 else "[<key>]"
    return path


def _expected(error: Mapping[str, Any], what: str) -> str:
    kind = error["type"]
    context = {key: _short(value) for key, value in (error.get("ctx") or {}).items()}
    if kind in ("value_error", "assertion_error"):
        # A validator the service wrote: its message is meant for the caller.
        return _short((error.get("ctx") or {}).get("error", "has an invalid value"))
    template = _EXPECTED.get(kind)
    if template is None:
        return "has an invalid value"
    try:
        return template.format(what=what, **context)
    except (KeyError, IndexError):  # a pydantic version without that ctx entry
        return "has an invalid value"


def _joined(expectations: list[str]) -> str:
    """`expected a string or an integer` for the branches of a union."""
    if len(expectations) > 1 and all(e.startswith("expected ") for e in expectations):
        return "expected " + " or ".join(e.removeprefix("expected ") for e in expectations)
    return " or ".join(expectations)


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."
