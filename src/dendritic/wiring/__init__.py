"""Who connects to whom: explicit index tables built from one seeded generator (SPEC §3)."""

from dendritic.wiring.budget import WiringTooLargeError, check_wiring_fits, estimate_wiring_bytes
from dendritic.wiring.connectivity import Connectivity
from dendritic.wiring.geometry import InputGeometry
from dendritic.wiring.rules import (
    cable_rules,
    get_cable_rule,
    get_receptive_field,
    receptive_fields,
    register_cable_rule,
    register_receptive_field,
)
from dendritic.wiring.sampling import (
    global_rf_inputs,
    local_rf_inputs,
    near_square_grid,
    random_inputs,
    random_somata,
    sample_patches,
    scattered_inputs,
    structured_somata,
)

__all__ = [
    "Connectivity",
    "InputGeometry",
    "WiringTooLargeError",
    "check_wiring_fits",
    "estimate_wiring_bytes",
    "cable_rules",
    "get_cable_rule",
    "get_receptive_field",
    "receptive_fields",
    "register_cable_rule",
    "register_receptive_field",
    "global_rf_inputs",
    "local_rf_inputs",
    "near_square_grid",
    "random_inputs",
    "random_somata",
    "sample_patches",
    "scattered_inputs",
    "structured_somata",
]
