"""LlmSettings from the environment, and the system table checked at start."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from mcpmesh.llm import local
from mcpmesh.llm.providers import parse_table
from mcpmesh.llm.settings import LlmSettings


def test_defaults_are_the_offline_provider_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, local.PACKAGE, None)  # without the optional local model
    settings = LlmSettings.from_env({})
    assert settings.providers == [{"name": "mock", "kind": "mesh-offline"}]
    [mock] = parse_table(settings.providers)
    assert mock.name == "mock" and [m.name for m in mock.models] == ["echo", "hash-embed"]


def test_values_are_read_and_typed(tmp_path: Path) -> None:
    table = [{"name": "o", "kind": "openai", "api_key_env": "OPENAI_API_KEY", "models": [{"name": "m"}]}]
    (tmp_path / "t.json").write_text(json.dumps(table))
    settings = LlmSettings.from_env(
        {
            "LLM_PROVIDERS_FILE": str(tmp_path / "t.json"),
            "LLM_ALIASES": '{"default": "m"}',
            "LLM_PROVIDER_TIMEOUT_S": "2.5",
            "LLM_NUM_RETRIES": "2",
            "LLM_ALLOW_PRIVATE_ENDPOINTS": "true",
        }
    )
    assert settings.providers == table and settings.aliases == {"default": "m"}
    assert (settings.provider_timeout_s, settings.num_retries, settings.allow_private_endpoints) == (
        2.5,
        2,
        True,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LLM_PROVIDER_TIMEOUT_S": "soon"}, "LLM_PROVIDER_TIMEOUT_S='soon' is not a valid float"),
        ({"LLM_PROVIDERS": "{}"}, "LLM_PROVIDERS must be a JSON list"),
        ({"LLM_ALIASES": "[1]"}, "LLM_ALIASES must be a JSON object"),
        ({"LLM_ALLOW_PRIVATE_ENDPOINTS": "maybe"}, "LLM_ALLOW_PRIVATE_ENDPOINTS='maybe' is not a valid bool"),
        ({"LLM_PROVIDER_TIMEOUT_S": "0"}, "must be positive"),
    ],
)
def test_bad_values_stop_the_service_saying_which(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LlmSettings.from_env(env)


def test_a_bad_table_names_the_provider() -> None:
    with pytest.raises(ValueError, match="LLM_PROVIDERS: provider 'x': kind must be one of"):
        parse_table([{"name": "x", "kind": "skynet", "models": [{"name": "m"}]}])
    with pytest.raises(ValueError, match="two providers with one name"):
        parse_table([{"name": "mock", "kind": "mesh-offline"}] * 2)
