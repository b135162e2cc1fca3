import numpy as np

from hei_nw_plugin.config import KeyerSettings
from hei_nw_plugin.embed import HashingEmbedder
from hei_nw_plugin.hopfield import HopfieldCompleter
from hei_nw_plugin.keyer import DGKeyer, pack_sparse, unpack_sparse


def _keyer(**kw: int) -> DGKeyer:
    return DGKeyer(KeyerSettings(**kw), HashingEmbedder(dim=64))


def test_keys_are_k_sparse_unit_and_deterministic() -> None:
    a = _keyer(dim=512, k=16).key(["Alice went to Paris"], [{"who": "Alice"}])
    b = _keyer(dim=512, k=16).key(["Alice went to Paris"], [{"who": "Alice"}])
    assert np.count_nonzero(a[0]) == 16
    assert np.isclose(np.linalg.norm(a[0]), 1.0)
    assert np.array_equal(a, b)
    c = _keyer(dim=512, k=16, seed=7).key(["Alice went to Paris"], [{"who": "Alice"}])
    assert not np.array_equal(a, c)


def test_shared_slots_raise_similarity() -> None:
    k = _keyer(dim=1024, k=64)
    base = k.key(["a meeting happened"], [{"who": "Alice", "where": "Paris", "when": "Monday"}])[0]
    partial = k.key(["a meeting happened"], [{"who": "Alice", "where": "Paris"}])[0]
    other = k.key(["a meeting happened"], [{"who": "Bob", "where": "Rome"}])[0]
    assert base @ partial > base @ other


def test_sparse_roundtrip() -> None:
    key = _keyer(dim=512, k=16).key(["x y z"], [{}])[0]
    back = unpack_sparse(pack_sparse(key))
    assert np.allclose(back, key, atol=1e-3)


def test_hopfield_completes_partial_cue_and_never_writes() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 64)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    cue = X[3].copy()
    cue[32:] = 0  # half the pattern missing
    cue /= np.linalg.norm(cue)
    X_before, cue_before = X.copy(), cue.copy()
    h = HopfieldCompleter(beta=16.0, steps=3)
    out = h.complete(cue, X)
    assert out.order[0] == 3
    assert float(out.pattern @ X[3]) > float(cue @ X[3])  # completion moves toward the stored pattern
    assert np.array_equal(X, X_before) and np.array_equal(cue, cue_before)
    assert (h.beta, h.steps) == (16.0, 3)
    try:
        h.beta = 1.0  # type: ignore[misc]
    except AttributeError:
        pass
    else:  # pragma: no cover
        raise AssertionError("Hopfield parameters must be read-only")
