"""A scenario with ``[workload.compression]``: validated like the other tables; the verdict's flash row
holds the compressed model and the run pays for decoding (issue #14)."""
from __future__ import annotations

import copy

import pytest

from simulator.run import run_scenario
from simulator.scenario import load_scenario, scenario_dict

SHORT = {"duration_s": 1800.0}


@pytest.fixture(scope="module")
def pair():
    """demo-compressed for half an hour, and the same scenario with dense frozen layers."""
    raw = scenario_dict("demo-compressed")
    raw.update(SHORT)
    dense = copy.deepcopy(raw)
    del dense["workload"]["compression"]
    return run_scenario(raw, compare=False), run_scenario(dense, compare=False)


def row(result, name):
    return next(r for r in result["constraints"] if r["name"] == name)


def test_flash_row_holds_the_compressed_model(pair):
    comp, dense = pair
    c = comp["compression"]
    assert dense["compression"] is None
    saved = c["dense_weight_bytes"] - c["compressed_weight_bytes"]
    assert saved > 0
    assert row(comp, "flash")["observed"] == row(dense, "flash")["observed"] - saved
    assert comp["flash_bytes"] == row(comp, "flash")["observed"]
    assert "stored as int8/xor" in row(comp, "flash")["note"] and "checkpointed dense" in row(comp, "flash")["note"]
    assert set(c["layers"]) == {"conv0", "conv2", "dense5"} and c["checkpoint"] == "dense"


def test_decoding_costs_time_and_energy(pair):
    comp, dense = pair
    c = comp["compression"]
    assert c["decode_ops_per_inference"] == sum(v["decode_ops"] for v in c["layers"].values()) > 0
    assert c["decode_s_per_inference"] > 0 and c["decode_energy_j_per_day"] > 0
    assert "decoding compressed weights" in row(comp, "energy_per_day")["note"]
    assert comp["inferences"] == dense["inferences"]
    assert comp["energy_j"]["active"] > dense["energy_j"]["active"]        # same work plus the decoding


def test_the_bundled_demo_variant_loads_with_its_table():
    sc = load_scenario("demo-compressed")
    spec = sc.workload.compression
    assert spec.format == "xor" and spec.prune == 0.5 and spec.bits == 2 and spec.layers is None
    assert spec.per_layer == {"conv0": {"format": "int8", "prune": 0.0, "bits": 8}}


@pytest.mark.parametrize("table,needle", [
    ({"format": "xor", "prune": 1.0}, "workload.compression.prune: 1.0: must be in [0, 1)"),
    ({"format": "lowrank", "bits": 2}, "workload.compression.bits: 2: format lowrank supports 32, 8, 1"),
    ({"format": "rle"}, "workload.compression.format: rle: must be one of"),
    ({"format": "xor", "blocks": 3}, "workload.compression: unknown key 'blocks'"),
    ("xor", "workload.compression must be a table"),
])
def test_bad_tables_name_the_scenario_field_and_value(table, needle):
    raw = {"workload": {"model": "mlp-digits", "compression": table}}
    with pytest.raises(ValueError, match="^<scenario>: .*" + needle.replace("[", r"\[").replace(")", r"\)")):
        load_scenario(raw)
