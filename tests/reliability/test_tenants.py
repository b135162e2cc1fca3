"""Tenant isolation under attack (issue 19), CI-sized: each tenant's key against the other tenant's memory over
every HTTP route and the MCP endpoint, rate and payload limits; and the fuzz notices a namespace that leaks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hei_nw_eval.reliability import tenants
from hei_nw_eval.reliability.tenant_attack import TenantData, header_sendable, leaks, user_variants

pytestmark = pytest.mark.integration


def test_no_tenant_reaches_the_other_and_the_limits_hold(tmp_path: Path) -> None:
    out = tmp_path / "tenants.json"
    r = tenants.run(cases=80, mcp_calls_n=20, embedder="hashing", seed=4, out=out, work_dir=tmp_path)
    assert r.ok, (r.failures, [t.examples[:3] for t in r.turns])
    assert r.routes_uncovered == [] and "POST /v1/memory/write" in r.routes_covered and r.mcp.startswith("fuzzed")
    assert all(t.http_cases == 80 and t.mcp_calls == 20 and t.statuses.get("404", 0) > 0 for t in r.turns)
    assert r.rate_limits["ok"] and r.payload_limits["ok"]
    assert json.loads(out.read_text())["turns"][0]["leaks"] == 0


def test_the_fuzz_catches_a_server_that_ignores_the_tenant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import server.deps
    import server.mcp.tools

    def everyone_is_acme(tenant: str, user: Any) -> str:
        return f"acme/{user or 'default'}"

    monkeypatch.setattr(server.deps, "namespace_for", everyone_is_acme)
    monkeypatch.setattr(server.mcp.tools, "namespace_for", everyone_is_acme)
    r = tenants.run(cases=40, mcp_calls_n=10, embedder="hashing", seed=5, work_dir=tmp_path)
    globex_attack = next(t for t in r.turns if t.attacker == "globex")
    assert not r.ok and globex_attack.failed
    assert globex_attack.leaks > 0 or globex_attack.cross_tenant_success > 0


def test_an_echo_of_the_request_is_not_a_leak() -> None:
    victim = TenantData(tenant="globex", key="k", trace_ids=["01abc"], canaries=["cnry1234"])
    assert leaks('{"message": "no trace \'01abc\' in namespace \'acme/u\'"}', victim, "/v1/memory/traces/01abc") == []
    assert leaks('{"text": "the code is cnry1234"}', victim, "/v1/memory/recall") == ["cnry1234"]


def test_every_user_variant_put_in_a_header_can_be_sent() -> None:
    import random

    import h11

    rng = random.Random(0)
    variants = {u for u in (user_variants("globex", rng) for _ in range(2000)) if u is not None}
    assert {" globex/alice", "globex\u2215bob"} <= variants  # a value h11 refuses, and one it cannot encode
    for u in variants:  # ' globex/alice' went into a header, the client refused to send it, and the MCP turn ended
        try:
            h11.Request(method="GET", target="/", headers=[("Host", "x"), ("X-HEI-User", u)])
            sendable = True
        except (h11.LocalProtocolError, UnicodeEncodeError):
            sendable = False
        assert header_sendable(u) == sendable, u
