"""Token counting works with no network, matches litellm's counter, and falls back deterministically."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import tiktoken
import tiktoken.load
import tiktoken.registry

from mcpmesh.context import tokens
from mcpmesh.context.tokens import ApproximateCounter, count_tokens, load_counter

SAMPLES = [
    "hello world",
    "You are a helpful assistant.",
    "Ünïcödé — 表情 🎉",
    "def f(x):\n    return x * 2\n",
    "",
]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(tiktoken.load, "read_file", refuse)  # any download attempt fails loudly
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})  # nothing loaded before counts


@pytest.mark.parametrize(("encoding", "expected"), [("cl100k_base", 2), ("o200k_base", 2)])
def test_counts_offline_with_the_bundled_files(no_network: None, encoding: str, expected: int) -> None:
    counter = load_counter(encoding)
    assert counter.name == encoding
    assert counter.count("hello world") == expected
    assert counter.count("") == 0
    assert counter.count("word " * 1000) > 999


def test_matches_litellm_token_counter_offline() -> None:
    """litellm (what the llm service meters with) gives the same numbers, also without network."""
    code = textwrap.dedent(f"""
        import json, socket
        def refuse(*a, **k):
            raise OSError("network disabled")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        import litellm
        print(json.dumps([litellm.token_counter(model="gpt-4", text=t) for t in {SAMPLES[:-1]!r}]))
    """)
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=110)
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = [int(n) for n in done.stdout.strip().splitlines()[-1].strip("[]").split(",")]
    ours = load_counter("cl100k_base")
    assert theirs == [ours.count(text) for text in SAMPLES[:-1]]


def test_falls_back_to_a_deterministic_approximation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "offline_encoding_dir", lambda encoding: None)
    counter = load_counter("cl100k_base")
    assert isinstance(counter, ApproximateCounter) and counter.name == "approx"
    assert counter.count("hello, world") == 5  # hello: ceil(5/4) = 2, ",": 1, world: 2
    assert counter.count("hello, world") == ApproximateCounter().count("hello, world")
    assert isinstance(load_counter("approx"), ApproximateCounter)


def test_unknown_encoding_falls_back_too() -> None:
    assert isinstance(load_counter("no_such_encoding"), ApproximateCounter)


async def test_large_texts_are_counted_off_the_event_loop_with_the_same_result() -> None:
    counter = load_counter("cl100k_base")
    text = "lorem ipsum " * 10_000
    assert (
        await count_tokens(counter, text)
        == counter.count(text)
        == len(tiktoken.get_encoding("cl100k_base").encode_ordinary(text))
    )
