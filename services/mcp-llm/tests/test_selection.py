"""Selection in the seed's order, as a table of cases (no bus, no provider: Routing.select)."""

from __future__ import annotations

import pytest

from mcpmesh.llm.admin import described
from mcpmesh.llm.orgconfig import OrgConfig
from mcpmesh.llm.providers import Deployment, parse_provider, parse_table
from mcpmesh.llm.routing import Routing
from mcpmesh.llm.settings import LlmSettings
from mcpmesh.proto.errors import ErrorCode, MeshException

SYSTEM = [
    {"name": "mock", "kind": "mesh-offline"},
    {"name": "sysa", "models": [{"name": "big", "class": "large"}, {"name": "emb", "mode": "embedding"}]},
    {"name": "sysb", "models": [{"name": "big2", "class": "large"}, {"name": "big", "class": "large"}]},
]
ORG = OrgConfig(
    version=1,
    providers=(
        parse_provider(
            {"name": "mine", "models": [{"name": "big", "class": "large"}, {"name": "own"}]}, owner="org"
        ),
    ),
    aliases={"fast": "own"},
)
ROUTING = Routing(
    LlmSettings(providers=SYSTEM, aliases={"default": "big", "fast": "big2", "embed": "emb"}),
    parse_table(SYSTEM),
)


@pytest.mark.parametrize(
    ("config", "allowed", "requested", "mode", "chain"),
    [
        # 1. the org's own configuration first, 2. then the system's
        (ORG, ["*"], "big", "chat", ["mine/big", "sysa/big", "sysb/big", "sysb/big2"]),
        (OrgConfig(), ["*"], "big", "chat", ["sysa/big", "sysb/big", "sysb/big2"]),
        # 3. the tier's allowed_models trim the chain (the first choice and the fallbacks)
        (ORG, ["sysb/*"], "big", "chat", ["sysb/big", "sysb/big2"]),
        (ORG, ["big"], "big", "chat", ["mine/big", "sysa/big", "sysb/big"]),
        # 4. the model the request names, or its alias (the org's aliases win)
        (ORG, ["*"], None, "chat", ["mine/big", "sysa/big", "sysb/big", "sysb/big2"]),
        (ORG, ["*"], "fast", "chat", ["mine/own"]),
        (OrgConfig(), ["*"], "fast", "chat", ["sysb/big2", "sysa/big", "sysb/big"]),
        (OrgConfig(), ["*"], "sysb/big", "chat", ["sysb/big", "sysa/big", "sysb/big2"]),
        (OrgConfig(), ["*"], None, "embedding", ["sysa/emb"]),
        (OrgConfig(), ["mock/*"], "echo", "chat", ["mock/echo"]),
    ],
)
def test_selection_order(
    config: OrgConfig, allowed: list[str], requested: str | None, mode: str, chain: list[str]
) -> None:
    selection = ROUTING.select(config, allowed, requested, mode)
    assert [d.label for d in selection.chain] == chain


@pytest.mark.parametrize(
    ("allowed", "requested", "mode", "code"),
    [
        (["mock/*"], "big", "chat", ErrorCode.FORBIDDEN),
        (["*"], "nope", "chat", ErrorCode.NOT_FOUND),
        (["*"], "emb", "chat", ErrorCode.NOT_FOUND),  # an embedding model is no chat model
        (["*"], "own", "chat", ErrorCode.NOT_FOUND),  # another org's model
    ],
)
def test_refusals(allowed: list[str], requested: str, mode: str, code: ErrorCode) -> None:
    with pytest.raises(MeshException) as refused:
        ROUTING.select(OrgConfig(), allowed, requested, mode)
    assert refused.value.error.code == code
    if code == ErrorCode.FORBIDDEN:
        assert refused.value.error.details["allowed"] == ["echo", "mock/echo"]  # the chat models


def test_models_known_to_litellm_get_their_window_and_prices_from_its_cost_map() -> None:
    [openai] = parse_table(
        [
            {
                "name": "openai",
                "models": [
                    {"name": "gpt-4o-mini"},
                    {"name": "m", "model": "gpt-4o-mini", "context_window": 10},
                ],
            }
        ]
    )
    known, mine = (described(Deployment(openai, m)) for m in openai.models)
    assert known["context_window"] == 128000 and known["input_cost_per_token"] > 0
    assert mine["context_window"] == 10  # the table wins
    [mock] = parse_table([{"name": "mock", "kind": "mesh-offline"}])
    assert described(Deployment(mock, mock.models[0]))["input_cost_per_token"] is None
