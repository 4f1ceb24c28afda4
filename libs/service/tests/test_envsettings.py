"""settings_from_env: a service's own settings from `<PREFIX><FIELD>` variables."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from mcpmesh.service.envsettings import settings_from_env


@dataclass(frozen=True)
class Example:
    name: str = "x"
    count: int = 1
    ratio: float = 0.5
    enabled: bool = False
    table: list[dict[str, Any]] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    derived: set[str] = field(default_factory=set)


def test_unset_and_empty_variables_keep_the_defaults() -> None:
    assert settings_from_env(Example, "EX_", {"EX_COUNT": " "}, skip=("derived",)) == Example()


def test_each_type_is_parsed() -> None:
    env = {
        "EX_NAME": " api ",
        "EX_COUNT": "7",
        "EX_RATIO": "2.5",
        "EX_ENABLED": "Yes",
        "EX_TABLE": '[{"a": 1}]',
        "EX_ALIASES": '{"fast": "m"}',
    }
    got = settings_from_env(Example, "EX_", env, skip=("derived",))
    assert got == Example("api", 7, 2.5, True, [{"a": 1}], {"fast": "m"})
    assert settings_from_env(Example, "EX_", {"EX_ENABLED": "off"}, skip=("derived",)).enabled is False


def test_given_values_win_and_skipped_fields_are_not_read() -> None:
    env = {"EX_COUNT": "3", "EX_DERIVED": "ignored"}
    got = settings_from_env(Example, "EX_", env, skip=("derived",), count=9)
    assert got.count == 9 and got.derived == set()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EX_COUNT": "lots"}, "EX_COUNT='lots' is not a valid int"),
        ({"EX_RATIO": "half"}, "EX_RATIO='half' is not a valid float"),
        ({"EX_ENABLED": "maybe"}, "EX_ENABLED='maybe' is not a valid bool"),
        ({"EX_TABLE": '{"a": 1}'}, "EX_TABLE must be a JSON list"),
        ({"EX_ALIASES": "[1]"}, "EX_ALIASES must be a JSON object"),
    ],
)
def test_a_bad_value_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settings_from_env(Example, "EX_", env, skip=("derived",))


def test_text_that_is_not_json_is_never_echoed() -> None:
    with pytest.raises(ValueError) as raised:
        settings_from_env(Example, "EX_", {"EX_TABLE": "sk-secret-not-json"}, skip=("derived",))
    assert "sk-secret" not in str(raised.value) and "EX_TABLE is not valid JSON" in str(raised.value)


def test_a_field_of_another_type_must_be_skipped() -> None:
    with pytest.raises(TypeError, match="EX_DERIVED"):
        settings_from_env(Example, "EX_", {})
