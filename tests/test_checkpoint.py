import dataclasses

import numpy as np
import pytest
from conftest import make_rules
from flax import nnx

from starjax.checkpoint import restore_params, save_params
from starjax.model.transformer import create_model


def test_params_round_trip_onto_another_mesh(model_cfg, tmp_path):
    model = create_model(model_cfg, make_rules((2, 2, 2)), seed=5)
    path = save_params(tmp_path / "params", model)
    restored = restore_params(path, model_cfg, make_rules((1, 8, 1)))
    assert restored.embed[...].sharding.mesh.shape["fsdp"] == 8
    for (p, a), (_, b) in zip(nnx.to_flat_state(nnx.state(model)), nnx.to_flat_state(nnx.state(restored))):
        np.testing.assert_array_equal(np.asarray(a[...]), np.asarray(b[...]), err_msg=str(p))


def test_restore_errors(model_cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        restore_params(tmp_path / "nothing", model_cfg, make_rules())
    path = save_params(tmp_path / "params", create_model(model_cfg, make_rules()))
    other = dataclasses.replace(model_cfg, d_model=32, mlp_dim=64)
    with pytest.raises(ValueError, match="does not match the configured model"):
        restore_params(path, other, make_rules())
