from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from omegaconf import MISSING

from speechkit.config import ConfigError, config_keys, load_config, save_config, to_yaml


@dataclass
class Optim:
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])


@dataclass
class Train:
    name: str = MISSING
    optim: Optim = field(default_factory=Optim)
    max_steps: int = 100
    use_amp: bool = False


def test_layers_merge_in_order(tmp_path):
    y = tmp_path / "a.yaml"
    y.write_text("name: base\nmax_steps: 5\noptim:\n  lr: 0.5\n")
    cfg = load_config(Train, y, overrides=["optim.lr=0.25", "optim.betas=[0.1,0.2]"])
    assert isinstance(cfg, Train) and isinstance(cfg.optim, Optim)
    assert (cfg.name, cfg.max_steps, cfg.optim.lr, cfg.optim.betas) == ("base", 5, 0.25, [0.1, 0.2])


def test_values_layer_between_yaml_and_overrides(tmp_path):
    y = tmp_path / "a.yaml"
    y.write_text("name: base\nmax_steps: 5\n")
    cfg = load_config(Train, y, values={"max_steps": 7, "name": "v"}, overrides=["name=o"])
    assert (cfg.max_steps, cfg.name) == (7, "o")


def test_unknown_key_in_yaml_names_key_and_file(tmp_path):
    y = tmp_path / "bad.yaml"
    y.write_text("name: x\noptim:\n  lrr: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key 'optim\.lrr' \(known keys under 'optim': lr, betas\)"):
        load_config(Train, y)


def test_unknown_top_level_override():
    with pytest.raises(ConfigError, match=r"command line: unknown key 'max_step'.*max_steps"):
        load_config(Train, overrides=["name=x", "max_step=3"])


def test_mistyped_value_names_key_and_file(tmp_path):
    y = tmp_path / "typo.yaml"
    y.write_text("name: x\nmax_steps: many\n")
    with pytest.raises(ConfigError, match=r"typo\.yaml: bad value for key 'max_steps'"):
        load_config(Train, y)
    with pytest.raises(ConfigError, match=r"command line: bad value for key 'use_amp'"):
        load_config(Train, overrides=["name=x", "use_amp=perhaps"])


def test_malformed_override_and_missing_required(tmp_path):
    with pytest.raises(ConfigError, match="malformed override 'max_steps'"):
        load_config(Train, overrides=["max_steps"])
    with pytest.raises(ConfigError, match="required key.*name"):
        load_config(Train)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Train, tmp_path / "nope.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(Train, bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_config(Train, broken)


def test_yaml_round_trip(tmp_path):
    cfg = load_config(Train, overrides=["name=rt", "optim.lr=0.125"])
    path = save_config(cfg, tmp_path / "out" / "cfg.yaml")
    assert load_config(Train, path) == cfg
    assert "lr: 0.125" in to_yaml(cfg)
    assert config_keys(Train) == ["name", "optim.lr", "optim.betas", "max_steps", "use_amp"]
