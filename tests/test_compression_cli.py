"""``edgesim compress``: the JSON it prints and the bad input it refuses (exit 2 naming flag and value)."""
from __future__ import annotations

import json

import pytest

from simulator.cli import main


def run_json(capsys, *argv):
    assert main(["compress", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_reports_every_layer_and_the_totals(capsys):
    out = run_json(capsys, "mlp-digits", "--format", "xor", "--prune", "0.91", "--bits", "1")
    for key in ("bits_per_weight", "flash_bytes", "accuracy_before", "accuracy_after", "roundtrip_exact", "layers"):
        assert key in out
    assert [x["layer"] for x in out["layers"]] == ["dense0", "dense1"]
    assert out["roundtrip_exact"] is True and all(x["roundtrip_exact"] for x in out["layers"])
    assert out["weights"] == 64 * 32 + 32 * 10
    total_bits = sum(x["total_bits"] for x in out["layers"])
    assert out["bits_per_weight"] == pytest.approx(total_bits / out["weights"])
    assert out["flash_bytes"] == sum(x["flash_bytes"] for x in out["layers"]) + 4 * (32 + 10)
    assert out["flash_bytes_f32"] == 4 * (out["weights"] + 42)
    assert out["accuracy_after"] < out["accuracy_before"]          # 91 % pruned to 1 bit costs accuracy
    assert all(x["params"]["xor_bits_per_weight"] <= 0.12 for x in out["layers"])
    # one model seed, stored once: the layers' shares of it add up to its code length
    seed = out["layers"][0]["params"]["seed"]
    assert all(x["params"]["seed"] == seed for x in out["layers"])
    assert sum(x["bits"]["model_header"] for x in out["layers"]) == out["layers"][0]["params"]["model_seed_bits"]


def test_f32_is_lossless(capsys):
    out = run_json(capsys, "mlp-microbit", "--format", "f32")
    assert out["accuracy_after"] == out["accuracy_before"] and out["bits_per_weight"] == 32.0


def test_deeptwist_fine_tuning_runs_and_is_reported(capsys):
    out = run_json(capsys, "mlp-microbit", "--format", "binary", "--prune", "0.5", "--distort-every", "5",
                   "--steps", "60")
    assert out["distort_every"] == 5 and out["steps"] == 60 and out["roundtrip_exact"] is True


@pytest.mark.parametrize("argv,needle", [
    (["--format", "xor", "--prune", "1.0"], "--prune 1.0: must be in [0, 1)"),
    (["--format", "csr", "--prune", "-0.2"], "--prune -0.2: must be in [0, 1)"),
    (["--format", "xor", "--bits", "8"], "--bits 8: format xor supports 1, 2, 3, 4"),
    (["--format", "int8", "--bits", "3"], "--bits 3: format int8 supports 8, 4"),
    (["--format", "csr", "--prune", "0.999"], "--prune 0.999: a layer of 192 weights would keep no weight"),
    (["--format", "xor", "--distort-every", "-1"], "--distort-every -1: must be >= 0"),
])
def test_bad_input_exits_2_naming_flag_and_value(capsys, argv, needle):
    assert main(["compress", "mlp-microbit", *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.strip().count("\n") <= 1


def test_an_unknown_format_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["compress", "mlp-microbit", "--format", "zip"])
    assert e.value.code == 2


def test_plan_verdict_table_shows_the_notes():
    """The terminal verdict table carries each row's note (as report.html does): short ones in a note column,
    long ones (the compressed-flash note) below the table, referenced as [n]."""
    from simulator.cli.plan import NOTE_MAX, verdict_table

    flash_note = "frozen layers conv0, dense5 stored as int8/xor: weights 1.0 KiB instead of 11.6 KiB; " \
                 "trained layers checkpointed dense"
    assert len(flash_note) > NOTE_MAX
    result = {"constraints": [
        {"name": "flash", "budget": 1024, "observed": 900, "margin": 124, "unit": "B", "ok": True, "note": flash_note},
        {"name": "step_latency", "budget": 1.0, "observed": None, "margin": None, "unit": "s", "ok": True,
         "note": "no training step ran"},
        {"name": "flash_wear", "budget": 0.2, "observed": 0.1, "margin": 0.1, "unit": "endurance/year", "ok": True}]}
    lines = verdict_table(result).splitlines()
    assert lines[0].split()[-1] == "note"
    assert lines[2].startswith("flash ") and lines[2].rstrip().endswith("[1]")
    assert lines[3].rstrip().endswith("no training step ran")
    assert lines[4].rstrip().endswith("ok")                      # no note, nothing after the verdict
    assert lines[5] == f"[1] flash: {flash_note}"
