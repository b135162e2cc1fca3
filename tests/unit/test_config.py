from pathlib import Path

import pytest

from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.errors import ConfigError


def test_defaults_validate_and_describe_every_field() -> None:
    s = HeiNwSettings()
    assert s.keyer.k <= s.keyer.dim
    for section in type(s).model_fields:
        sub = getattr(s, section)
        for name, field in type(sub).model_fields.items():
            assert field.description, f"{section}.{name} has no help text"


def test_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEI_NW_GATE__TAU", "0.42")
    monkeypatch.setenv("HEI_NW_INDEX__CONNECTIVITY", "24")
    s = HeiNwSettings()
    assert s.gate.tau == 0.42 and s.index.connectivity == 24


def test_toml_and_yaml_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = tmp_path / "s.toml"
    t.write_text("[keyer]\ndim = 512\nk = 16\n[hopfield]\nsteps = 3\n")
    s = HeiNwSettings.from_file(t)
    assert (s.keyer.dim, s.keyer.k, s.hopfield.steps) == (512, 16, 3)
    y = tmp_path / "s.yaml"
    y.write_text("pack:\n  max_mem_tokens: 64\n")
    assert HeiNwSettings.from_file(y).pack.max_mem_tokens == 64
    monkeypatch.setenv("HEI_NW_KEYER__K", "8")  # env beats the file
    assert HeiNwSettings.from_file(t).keyer.k == 8


@pytest.mark.parametrize("body", ["[keyer]\nk = 5000\ndim = 64\n", "[gate]\ntau = -1\n", "[nope]\nx = 1\n", "not toml ["])
def test_bad_settings_raise_config_error(tmp_path: Path, body: str) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(body)
    with pytest.raises(ConfigError):
        HeiNwSettings.from_file(p)


def test_missing_file_and_bad_suffix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        HeiNwSettings.from_file(tmp_path / "missing.toml")
    p = tmp_path / "s.ini"
    p.write_text("x")
    with pytest.raises(ConfigError):
        HeiNwSettings.from_file(p)
