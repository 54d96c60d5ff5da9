"""Scenario files: defaults, validation errors naming file/field/value, dotted overrides."""
from __future__ import annotations

import pytest

from simulator.scenario import DEFAULTS, SCENARIO_DIR, apply_overrides, load_scenario, scenario_dict


def test_defaults_fill_in_and_embedded_scenarios_load():
    sc = load_scenario({"name": "x"})
    assert sc.duration_s == DEFAULTS["duration_s"] and sc.schedule.batch == DEFAULTS["schedule"]["batch"]
    assert sc.techniques.active() == []
    for path in sorted(SCENARIO_DIR.glob("*.toml")):
        s = load_scenario(path)
        assert s.where == str(path) and s.duration_s > 0
    demo = load_scenario("demo")          # by embedded name
    assert demo.device == "stm32f405-pyboard" and demo.techniques.fused_update
    assert [v.label for v in demo.compare][0] == "plain backprop"


@pytest.mark.parametrize("over, field, value", [
    ({"duration_s": 0}, "duration_s", "0"),
    ({"duration_s": "long"}, "duration_s", "'long'"),
    ({"runtime": "rust"}, "runtime", "'rust'"),
    ({"schedule.trigger": "sometimes"}, "schedule.trigger", "'sometimes'"),
    ({"schedule.batch": 0}, "schedule.batch", "0"),
    ({"schedule.batch": 2.5}, "schedule.batch", "2.5"),
    ({"schedule.memory_policy": "magic"}, "schedule.memory_policy", "'magic'"),
    ({"pipeline.sensor_rate_hz": -1}, "pipeline.sensor_rate_hz", "-1"),
    ({"pipeline.window": True}, "pipeline.window", "True"),
    ({"workload.lr": 0}, "workload.lr", "0"),
    ({"workload.momentum": 1.0}, "workload.momentum", "1.0"),
    ({"workload.momentum": -0.1}, "workload.momentum", "-0.1"),
    ({"workload.story": "drama"}, "workload.story", "'drama'"),
    ({"battery.initial_fraction": 1.5}, "battery.initial_fraction", "1.5"),
    ({"battery.harvest_w_by_hour": [1, 2]}, "battery.harvest_w_by_hour", "[1, 2]"),
    ({"budgets.deadline_miss_rate": -0.1}, "budgets.deadline_miss_rate", "-0.1"),
    ({"schedule.wibble": 3}, "schedule.wibble", "3"),
    ({"schedule.techniques.warp": True}, "warp", "warp"),
    ({"schedule.techniques.update": "most"}, "update", "'most'"),
    ({"schedule.trigger": "charging"}, "battery.harvest_w_by_hour", "[]"),
    ({"compare.variants": [{"label": 3}]}, "compare.variants[0]", "3"),
])
def test_bad_values_name_the_file_the_field_and_the_value(over, field, value):
    d = apply_overrides({"name": "bad"}, over)
    with pytest.raises(ValueError) as e:
        load_scenario(d, where="my.toml")
    msg = str(e.value)
    assert msg.startswith("my.toml: ") and field in msg and value in msg, msg


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        load_scenario(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [\n")
    with pytest.raises(ValueError, match=r"bad.toml: malformed TOML"):
        load_scenario(bad)
    typo = tmp_path / "typo.toml"
    typo.write_text("[schedule]\nbatchsize = 4\n")
    with pytest.raises(ValueError, match=r"typo.toml: schedule.batchsize is not a known field \(value 4\)"):
        load_scenario(typo)


def test_apply_overrides_is_a_copy_with_dotted_keys():
    base = scenario_dict("demo")
    base_batch = base["schedule"]["batch"]
    d = apply_overrides(base, {"schedule.batch": 16, "schedule.techniques.etf": True, "device": "rpi-pico",
                               "battery.harvest_w_by_hour": [0.0] * 24})
    assert d["schedule"]["batch"] == 16 and d["schedule"]["techniques"] == {"fused_update": True, "etf": True}
    assert d["device"] == "rpi-pico"
    assert base["schedule"]["batch"] == base_batch != 16 and "etf" not in base["schedule"]["techniques"]  # untouched
    sc = load_scenario(d)
    assert sc.schedule.batch == 16 and sc.techniques.etf
    with pytest.raises(ValueError, match="'device.x': device is not a table"):
        apply_overrides(base, {"device.x": 1})
    with pytest.raises(ValueError, match="dotted field name"):
        apply_overrides(base, {"schedule..batch": 1})
