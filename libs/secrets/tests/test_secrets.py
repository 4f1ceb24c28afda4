from __future__ import annotations

import base64
import logging

import pytest

from mcpmesh.secrets import (
    SECRETS_KINDS,
    InvalidSecret,
    MasterKeys,
    SecretCorrupted,
    SecretsConfigError,
    TenantSecrets,
    new_master_key_entry,
)
from mcpmesh.secrets.__main__ import main as cli_main
from mcpmesh.store import Database, Store

PLAINTEXT = "sk-live-0123456789abcdefSECRETtail"


def keys(*entries: str) -> MasterKeys:
    return MasterKeys.parse(",".join(entries))


K1 = new_master_key_entry("k1")
K2 = new_master_key_entry("k2")


@pytest.fixture
def store(mongo_db: Database) -> Store:
    return Store(mongo_db, SECRETS_KINDS)


async def test_put_returns_only_fingerprint_and_tail_and_stores_no_plaintext(store: Store) -> None:
    vault = TenantSecrets(store.for_tenant("org-acme"), keys(K1))
    info = await vault.put("openai", PLAINTEXT)
    assert info.last4 == "tail" and info.fingerprint.startswith("sha256:") and info.key_id == "k1"
    assert PLAINTEXT not in repr(info.to_dict())
    raw = await store.db.get_collection("org-acme__secrets").find_one({"_id": "openai"})
    assert raw is not None
    assert PLAINTEXT.encode() not in b"".join(v for v in raw.values() if isinstance(v, bytes))
    assert PLAINTEXT not in repr(raw)
    revealed = await vault.reveal("openai")
    assert revealed is not None and revealed.reveal() == PLAINTEXT
    assert PLAINTEXT not in f"{revealed} {revealed!r}"


async def test_short_values_show_no_tail_and_fingerprints_tell_values_apart(store: Store) -> None:
    vault = TenantSecrets(store.for_tenant("org-acme"), keys(K1))
    short = await vault.put("pin", "12345678")
    assert short.last4 is None
    other = await vault.put("pin2", "12345679")
    assert short.fingerprint != other.fingerprint


async def test_replace_keeps_created_at_and_delete_removes(store: Store) -> None:
    vault = TenantSecrets(store.for_tenant("org-acme"), keys(K1))
    first = await vault.put("dxp", PLAINTEXT)
    second = await vault.put("dxp", PLAINTEXT + "2")
    assert second.created_at == first.created_at and second.fingerprint != first.fingerprint
    assert [i.name for i in await vault.infos()] == ["dxp"]
    assert await vault.delete("dxp") is True
    assert await vault.delete("dxp") is False
    assert await vault.reveal("dxp") is None and await vault.info("dxp") is None


async def test_orgs_cannot_read_each_other_and_moved_ciphertext_does_not_open(store: Store) -> None:
    acme = TenantSecrets(store.for_tenant("org-acme"), keys(K1))
    globex = TenantSecrets(store.for_tenant("org-globex"), keys(K1))
    await acme.put("openai", PLAINTEXT)
    assert await globex.reveal("openai") is None and await globex.infos() == []
    # An operator (or attacker with DB access) copies the sealed row into another org: it fails auth.
    row = await store.db.get_collection("org-acme__secrets").find_one({"_id": "openai"})
    assert row is not None
    await (await store.for_tenant("org-globex").collection("secrets")).insert_one(row)
    with pytest.raises(SecretCorrupted):
        await globex.reveal("openai")
    # ... or under another name in the same org.
    row["_id"] = "renamed"
    await (await store.for_tenant("org-acme").collection("secrets")).insert_one(row)
    with pytest.raises(SecretCorrupted):
        await acme.reveal("renamed")


async def test_rotation_rewraps_under_the_new_key_and_old_key_can_then_go(store: Store) -> None:
    old = TenantSecrets(store.for_tenant("org-acme"), keys(K1))
    await old.put("a", PLAINTEXT)
    await old.put("b", PLAINTEXT + "b")
    rotated = TenantSecrets(store.for_tenant("org-acme"), keys(K2, K1))  # k2 active, k1 still readable
    assert (await rotated.reveal("a")).reveal() == PLAINTEXT  # type: ignore[union-attr]
    assert await rotated.rewrap() == 2
    assert await rotated.rewrap() == 0
    only_new = TenantSecrets(store.for_tenant("org-acme"), keys(K2))
    assert {i.key_id for i in await only_new.infos()} == {"k2"}
    assert (await only_new.reveal("b")).reveal() == PLAINTEXT + "b"  # type: ignore[union-attr]
    with pytest.raises(SecretsConfigError, match="not configured"):
        await TenantSecrets(store.for_tenant("org-acme"), keys(K1)).reveal("a")


async def test_tenant_drop_deletes_secrets_with_the_tenant(store: Store) -> None:
    vault = TenantSecrets(store.for_tenant("org-acme"), keys(K1))
    await vault.put("openai", PLAINTEXT)
    await store.drop_tenant("org-acme")
    assert await vault.infos() == []


@pytest.mark.parametrize(
    ("name", "value", "complaint"),
    [
        ("Bad Name", "x" * 20, "secret name"),
        ("ok", "   ", "non-empty"),
        ("ok", "x" * 20_000, "longer than"),
    ],
)
async def test_bad_secrets_are_refused_without_echoing_the_value(
    store: Store, name: str, value: str, complaint: str
) -> None:
    vault = TenantSecrets(store.for_tenant("org-acme"), keys(K1))
    with pytest.raises(InvalidSecret, match=complaint) as info:
        await vault.put(name, value)
    assert value.strip() == "" or value not in str(info.value)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "no master key"),
        ("nokid", "'<id>:<base64 key>'"),
        ("k1:" + base64.urlsafe_b64encode(b"short").decode(), "32 bytes"),
        (f"{K1},{K1}", "twice"),
    ],
)
def test_master_key_configuration_errors_say_what_to_set(text: str, complaint: str) -> None:
    with pytest.raises(SecretsConfigError, match=complaint) as info:
        MasterKeys.parse(text)
    assert K1.split(":")[1] not in str(info.value)


def test_master_keys_from_env_or_file(tmp_path: object) -> None:
    with pytest.raises(SecretsConfigError, match="MCPMESH_SECRETS_KEYS"):
        MasterKeys.from_env({})
    assert MasterKeys.from_env({"MCPMESH_SECRETS_KEYS": f"{K2},{K1}"}).active == "k2"
    path = tmp_path / "keys"  # type: ignore[operator]
    path.write_text(f"# rotated 2026-12\n{K1}\n{K2}\n")
    loaded = MasterKeys.from_env({"MCPMESH_SECRETS_KEYS_FILE": str(path)})
    assert loaded.active == "k1" and set(loaded.keys) == {"k1", "k2"}
    assert K1.split(":")[1] not in repr(loaded)


def test_cli_prints_a_usable_entry(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["new-key", "prod-2026"]) == 0
    entry = capsys.readouterr().out.strip()
    assert MasterKeys.parse(entry).active == "prod-2026"
    assert cli_main(["bogus"]) == 2


async def test_no_plaintext_in_any_log_line(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    vault = TenantSecrets(store.for_tenant("org-acme"), keys(K1))
    info = await vault.put("openai", PLAINTEXT)
    value = await vault.reveal("openai")
    logging.getLogger("test").info("stored %s as %s, revealed %s", info, info.to_dict(), value)
    assert caplog.records and all(PLAINTEXT not in r.getMessage() for r in caplog.records)
