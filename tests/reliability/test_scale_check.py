"""Scale check (issue 8 part 6), CI-sized: the grown cost curve and the shard / cache comparison run end to end
on the real embedder and write their JSON; a kept store is reused, not refilled."""

from __future__ import annotations

import json
from pathlib import Path

from hei_nw_eval.reliability import scale


def test_scale_check_writes_the_cost_curve_and_the_shard_comparison(tmp_path: Path) -> None:
    out = tmp_path / "reports"
    keep = tmp_path / "keep"
    r = scale.run([300, 1200], keep=keep, shards_n=800, queries=20, out_dir=out, progress=False)
    curve = json.loads((out / "scale.json").read_text())
    rows = curve["results"]
    assert [row["n"] for row in rows] == [300, 1200] and all(row["grow"] for row in rows)
    assert rows[-1]["accepted"] == 1200 and rows[-1]["rss_mb"] > 0 and rows[-1]["disk_mb"] > rows[0]["disk_mb"]
    assert rows[-1]["hit_at_1"] >= 0.8  # half the slots plus the ref name one episode
    assert r["p95_ok"] == (rows[-1]["latency_ms"]["total"]["p95"] <= scale.P95_TARGET_MS)
    shards = json.loads((out / "shards.json").read_text())
    by = {row["variant"]: row for row in shards["shards"]}
    assert by["one graph"]["shards"] == 1 and by["time shards"]["shards"] == 4
    assert sum(by["time shards"]["shard_sizes"]) == 800 and max(by["time shards"]["shard_sizes"]) <= 200
    assert by["slot shards (where)"]["shards"] == 14 and 0 < by["slot shards (where)"]["routed_share"] < 1
    for row in shards["shards"]:
        assert row["hit_at_1"] >= 0.8, row
        assert row["latency_ms"]["embed"]["p50"] > 1.0, row  # every variant embeds its cues (no cached cue from the last one)
    cache = {row["prefetch"]: row for row in shards["cache"]}
    assert cache[False]["prefetched"] == 0 and cache[True]["prefetched"] > 0
    assert cache[False]["feature_cache"] == 160
    # Kept stores are reused: a second run fills nothing and measures again.
    filled_at = rows[-1]["filled_at"]
    again = scale.run([300, 1200], keep=keep, shards_n=None, queries=10, out_dir=out, progress=False)
    first, last = again["scale"]["results"]
    assert last["filled_at"] == filled_at and last["queries"] == 10 and again["shards"] is None
    assert first["carried_over"] and first["queries"] == 20  # the grown store is past 300: that row is the earlier one
