"""Logical axis names -> mesh axes.

Every parameter, activation and cache carries logical axis names ("embed", "batch", ...);
`AxisRules` maps them to the mesh axes ("data", "fsdp", "tensor") with rules from the config.
It is a hashable value held by the model, so sharding constraints need no global context and
are applied on every backend, CPU included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

Names = tuple[str | None, ...]


@dataclass(frozen=True)
class AxisRules:
    mesh: Mesh
    rules: tuple[tuple[str, str | tuple[str, ...] | None], ...]

    @classmethod
    def from_config(cls, mesh: Mesh, rules: Mapping[str, Sequence[str]]) -> "AxisRules":
        def target(axes: Sequence[str]) -> str | tuple[str, ...] | None:
            if not axes:
                return None
            return axes[0] if len(axes) == 1 else tuple(axes)

        return cls(mesh, tuple((name, target(axes)) for name, axes in sorted(rules.items())))

    def spec(self, names: Names) -> PartitionSpec:
        table = dict(self.rules)
        missing = [n for n in names if n is not None and n not in table]
        if missing:
            raise KeyError(f"no sharding rule for logical axis {missing[0]!r}; add mesh.rules.{missing[0]}=[...]")
        return PartitionSpec(*(table[n] if n is not None else None for n in names))

    def sharding(self, names: Names) -> NamedSharding:
        return NamedSharding(self.mesh, self.spec(names))

    def constrain(self, x: jax.Array, names: Names) -> jax.Array:
        return jax.lax.with_sharding_constraint(x, self.sharding(names))

    def param_metadata(self, names: Names) -> dict:
        """Variable metadata that lets `nnx.get_named_sharding` resolve a parameter's sharding."""
        self.spec(names)  # fail early on a name without a rule
        return dict(out_sharding=names, sharding_rules=self.rules, eager_sharding=False)
