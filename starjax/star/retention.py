"""Which policies (RUN_DIR/params/iter_N) a run keeps: `star.keep_policies`.

A policy is about the model's size (a 1.5B model in float32: 6 GB), so a ten-iteration run
that kept all of them would hold ten copies. The newest is what a resume (and a fine-tune with
`restart_from_base=false`) continues from; the one before it covers a kill while the newest is
written.
"""

from __future__ import annotations

import shutil

from starjax.run_dir import RunDir


def kept_iterations(test_accuracy: dict[int, float], newest: int, policy: str) -> set[int] | None:
    """The iterations whose policy stays (None: all). `test_accuracy`: of evaluated iterations >= 1;
    of equally good ones the earliest is the best."""
    if policy == "all":
        return None
    keep = {newest, newest - 1}
    if policy == "best" and test_accuracy:
        keep.add(max(sorted(test_accuracy), key=lambda n: test_accuracy[n]))
    return keep


def prune_policies(run_dir: RunDir, test_accuracy: dict[int, float], newest: int, policy: str) -> list[int]:
    """Deletes the policies `policy` does not keep; returns their iterations."""
    keep = kept_iterations(test_accuracy, newest, policy)
    if keep is None or not run_dir.params.is_dir():
        return []
    dropped = []
    for path in run_dir.params.glob("iter_*"):
        n = path.name[len("iter_") :]
        if n.isdigit() and int(n) not in keep and path.is_dir():
            shutil.rmtree(path)
            dropped.append(int(n))
    return sorted(dropped)
