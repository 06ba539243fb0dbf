import pytest
import yaml

from starjax.config import load_config, save_config, to_yaml
from starjax.errors import ConfigError
from starjax.schema import Config


def write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_schema_defaults_without_file():
    cfg = load_config()
    assert isinstance(cfg, Config)
    assert cfg.model.num_layers == 4 and cfg.mesh.data == -1
    assert cfg.mesh.rules["batch"] == ["data", "fsdp"]


def test_yaml_then_cli_precedence(tmp_path):
    p = write(tmp_path, "seed: 3\nmodel:\n  num_layers: 6\n  d_model: 128\n")
    cfg = load_config(p, ["model.num_layers=2", "model.compute_dtype=bfloat16"])
    assert cfg.seed == 3
    assert cfg.model.num_layers == 2  # CLI beats YAML
    assert cfg.model.d_model == 128  # YAML beats schema
    assert cfg.model.compute_dtype == "bfloat16"


def test_preset_applies_and_explicit_keys_win(tmp_path):
    cfg = load_config(None, ["model.preset=small"])
    m = cfg.model
    assert (m.num_layers, m.d_model, m.num_heads, m.num_kv_heads, m.mlp_dim) == (12, 768, 12, 4, 3072)
    p = write(tmp_path, "model:\n  preset: small\n  num_layers: 2\n")
    assert load_config(p).model.num_layers == 2
    assert load_config(p).model.d_model == 768
    tiny = load_config(None, ["model.preset=tiny"]).model
    assert (tiny.num_layers, tiny.d_model, tiny.num_heads, tiny.num_kv_heads, tiny.mlp_dim) == (4, 256, 4, 2, 1024)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="model.preset='huge' is unknown; choose one of"):
        load_config(None, ["model.preset=huge"])


@pytest.mark.parametrize(
    "override, suggestion",
    [("model.nmu_layers=2", "model.num_layers"), ("modle.d_model=8", "model"), ("sed=1", "seed")],
)
def test_unknown_key_suggests_closest(override, suggestion):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    msg = str(e.value)
    assert "\n" not in msg
    assert f"did you mean {suggestion}?" in msg


def test_unknown_key_in_yaml(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'mesh.tensr'; did you mean mesh.tensor"):
        load_config(write(tmp_path, "mesh:\n  tensr: 2\n"))


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.num_layers=abc", "model.num_layers='abc' has the wrong type: expected int"),
        ("model.rope_theta=fast", "model.rope_theta='fast' has the wrong type: expected float"),
        ("model.tie_embeddings=maybe", "model.tie_embeddings='maybe' has the wrong type: expected bool"),
        ("model.vocab_size=x", "model.vocab_size='x' has the wrong type: expected int or null"),
        ("mesh.rules.embed=fsdp", "mesh.rules.embed='fsdp' has the wrong type: expected list of str"),
    ],
)
def test_wrong_type_names_key_value_and_type(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert str(e.value) == message


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["model.num_heads=6", "model.num_kv_heads=4", "model.d_model=48"], "num_kv_heads=4 must divide"),
        (["model.compute_dtype=float16"], "compute_dtype='float16' must be one of"),
        (["mesh.data=-1", "mesh.fsdp=-1"], "at most one of"),
        (["mesh.tensor=0"], "mesh sizes must be positive or -1"),
        (["mesh.rules.embed=[model]"], "mesh.rules.embed names mesh axis 'model'"),
        (["mesh.rules.batch=[data,data]"], "repeats a mesh axis"),
        (["model.d_model=100", "model.num_heads=3", "model.num_kv_heads=1"], "set model.head_dim"),
        (["model.num_layers=0"], "model.num_layers=0 must be positive"),
        (["runtime.platform=abacus"], "runtime.platform='abacus'"),
        (["star.rationalize_samples=0"], "star.rationalize_samples=0 must be >= 1"),
        (["star.solved_samples=0"], "star.solved_samples=0 must be >= 1"),
        (["pretrain.warm_learning_rate=0"], "pretrain.warm_learning_rate=0.0 must be > 0"),
        (["pretrain.warm_steps=-1"], "warm_steps must be >= 0"),
    ],
)
def test_semantic_validation(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides)


def test_rules_are_overridable_and_extensible():
    cfg = load_config(None, ["mesh.rules.embed=[]", "mesh.rules.batch=[data]"])
    assert cfg.mesh.rules["embed"] == [] and cfg.mesh.rules["batch"] == ["data"]


@pytest.mark.parametrize("bad", ["model.num_layers", "=3"])
def test_malformed_override(bad):
    with pytest.raises(ConfigError, match="must look like key.sub=value"):
        load_config(None, [bad])


def test_missing_and_unparsable_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(write(tmp_path, "model: [unclosed\n"))
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


def test_saved_config_reloads_identically(tmp_path):
    cfg = load_config(None, ["model.preset=small", "seed=7", "mesh.rules.embed=[]"])
    path = save_config(cfg, tmp_path / "run")
    assert path == tmp_path / "run" / "config.yaml"
    assert yaml.safe_load(path.read_text())["seed"] == 7
    assert load_config(path) == cfg
    assert to_yaml(load_config(path)) == to_yaml(cfg)


def test_include_loads_another_recipe_first(tmp_path):
    (tmp_path / "base.yaml").write_text("seed: 3\nmodel:\n  num_layers: 2\n  d_model: 64\n")
    (tmp_path / "child.yaml").write_text("include: base.yaml\nmodel:\n  num_layers: 5\n")
    cfg = load_config(tmp_path / "child.yaml", ["model.d_model=32"])
    assert (cfg.seed, cfg.model.num_layers, cfg.model.d_model) == (3, 5, 32)
    (tmp_path / "loop.yaml").write_text("include: loop.yaml\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_config(tmp_path / "loop.yaml")
    (tmp_path / "missing.yaml").write_text("include: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
