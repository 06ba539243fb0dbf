"""star.keep_policies: which params/iter_N a run keeps."""

import pytest

from starjax.config import load_config
from starjax.errors import ConfigError
from starjax.run_dir import RunDir
from starjax.star.retention import kept_iterations, prune_policies
from starjax.validation import validate_star

ACCURACY = {1: 0.50, 2: 0.80, 3: 0.70, 4: 0.80, 5: 0.60}


@pytest.mark.parametrize(
    "policy, kept",
    [("all", {1, 2, 3, 4, 5}), ("last", {4, 5}), ("best", {2, 4, 5})],  # best: the earliest of equals
)
def test_prune_keeps_what_the_policy_names(tmp_path, policy, kept):
    run = RunDir.at(tmp_path)
    for n in ACCURACY:
        (run.policy(n) / "data").mkdir(parents=True)
    (run.params / "notes.txt").write_text("not a policy")
    dropped = prune_policies(run, ACCURACY, 5, policy)
    assert {n for n in ACCURACY if run.policy(n).is_dir()} == kept
    assert dropped == sorted(set(ACCURACY) - kept)
    assert (run.params / "notes.txt").exists()


def test_the_newest_two_stay_even_when_worse():
    assert kept_iterations({1: 0.9, 2: 0.1, 3: 0.2}, 3, "best") == {1, 2, 3}
    assert kept_iterations({1: 0.9}, 1, "best") == {0, 1}  # iteration 0 is the base, never in params/
    assert kept_iterations({}, 1, "all") is None


def test_an_unknown_policy_is_one_line():
    with pytest.raises(ConfigError, match="star.keep_policies='newest' is not one of all, last, best"):
        validate_star(load_config(None, ["star.keep_policies=newest"]))
