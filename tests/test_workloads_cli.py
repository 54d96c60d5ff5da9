"""``edgesim workloads``: the zoo table, one model described, the grammar in --help, bad specs exit 2."""
import json

import pytest

from simulator.cli import main


def test_lists_the_zoo_with_step_costs(capsys):
    assert main(["workloads"]) == 0
    out = capsys.readouterr().out
    for name in ("mlp-digits", "lenet-digits", "cnn1d-accel", "mlp-microbit", "mlp:64-32-10", "KiB"):
        assert name in out
    assert "cNkK" in out


def test_json_lists_every_zoo_entry_with_exact_forward_macs(capsys):
    assert main(["workloads", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    by = {e["name"]: e for e in d["workloads"]}
    assert by["mlp-digits"]["macs_forward"] == 64 * 32 + 32 * 10
    assert by["mlp-microbit"]["param_bytes_f32"] == (16 * 12 + 12 + 12 * 10 + 10) * 4
    assert by["mlp-digits"]["step"]["macs"] > 2 * by["mlp-digits"]["macs_forward"]
    assert "grammar" in d


def test_describes_a_spec(capsys):
    assert main(["workloads", "cnn:8x8x1-c8k3-p2-c16k3-gap-d10", "--batch", "4"]) == 0
    out = capsys.readouterr().out
    assert "Conv2D" in out and "6x6x8" in out and "batch 4" in out


def test_help_teaches_the_grammar(capsys):
    with pytest.raises(SystemExit):
        main(["workloads", "--help"])
    out = capsys.readouterr().out
    for token in ("mlp:64-32-10", "cnn:8x8x1-c8k3-p2-c16k3-gap-d10", "cnn1d:", "gap", "dwK"):
        assert token in out


@pytest.mark.parametrize("spec, part", [("mlp:64--10", "empty part"), ("cnn:8x8x1-c0k3", "'c0k3'"),
                                        ("cnn:8x8x1-z3-d10", "unknown layer 'z'"), ("nonesuch", "not a zoo name")])
def test_bad_spec_exits_2_with_one_line(spec, part, capsys):
    assert main(["workloads", spec]) == 2
    err = capsys.readouterr().err.strip()
    assert part in err and len(err.splitlines()) == 1


def test_bad_batch_exits_2(capsys):
    assert main(["workloads", "--batch", "0"]) == 2
    assert "--batch" in capsys.readouterr().err


def test_train_reports_accuracy_before_and_after(capsys):
    assert main(["workloads", "mlp-microbit", "--train", "60", "--batch", "8", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["spec"] == "mlp:16-12-10" and r["steps"] == 60 and r["macs"] > 0
    assert r["after"]["user_accuracy"] > r["before"]["user_accuracy"]
    assert r["last_loss"] < r["first_loss"]


def test_train_with_techniques(capsys):
    assert main(["workloads", "lenet-digits", "--train", "3", "--batch", "4",
                 "--techniques", "instance_filter=0.2, update=last-k,last_k=2,fused_update=true"]) == 0
    out = capsys.readouterr().out
    assert "instance_filter, update, last_k, fused_update" in out and "MACs in total" in out


@pytest.mark.parametrize("argv, words", [
    (["workloads", "mlp-digits", "--train", "2", "--techniques", "bogus=1"], ["unknown technique 'bogus'"]),
    (["workloads", "mlp-digits", "--train", "2", "--techniques", "etf"], ["'etf' is not KEY=VALUE"]),
    (["workloads", "mlp-digits", "--train", "2", "--techniques", "update=all-of-it"], ["techniques.update"]),
    (["workloads", "--train", "2"], ["needs a WORKLOAD"]),
    (["workloads", "mlp-digits", "--train", "-1"], ["--train must be >= 0"]),
])
def test_train_bad_input_exits_2(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    for w in words:
        assert w in err


@pytest.mark.parametrize("argv, words", [
    (["--story", "noisy-labels", "--label-noise", "1.5"], ["--label-noise", "1.5"]),
    (["--story", "noisy-labels", "--label-noise", "-0.1"], ["--label-noise", "-0.1"]),
    (["--story", "unlabelled", "--label-fraction", "1.0"], ["--label-fraction", "1.0"]),
    (["--story", "input-noise", "--noise-level", "nan"], ["--noise-level", "nan"]),
    (["--techniques", "self_adaptive=1.5"], ["--techniques", "self_adaptive", "1.5"]),
    (["--techniques", "sinkhorn=0"], ["--techniques", "sinkhorn", "0"]),
    (["--techniques", "buffer=fifo,buffer_size=4"], ["buffer_size", "--batch 8", "4"]),
    (["--techniques", "buffer=lifo"], ["--techniques", "buffer", "'lifo'"]),
    (["--techniques", "self_adaptve=0.9"], ["unknown technique 'self_adaptve'"]),
])
def test_imperfect_data_bad_input_exits_2_naming_flag_and_value(argv, words, capsys):
    assert main(["workloads", "mlp-digits", "--train", "2", "--batch", "8"] + argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    for w in words:
        assert w in err[0]


def test_imperfect_data_story_and_technique_from_the_command_line(capsys):
    assert main(["workloads", "mlp-digits", "--train", "3", "--batch", "8", "--story", "noisy-labels",
                 "--label-noise", "0.3", "--label-noise-kind", "confusable", "--techniques",
                 "self_adaptive=0.9,self_adaptive_start=0", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert set(r["before"]) == {"user_accuracy", "retention_accuracy"} and set(r["after"]) == set(r["before"])
    assert r["story"] == "noisy-labels" and r["techniques"] == ["self_adaptive", "self_adaptive_start"]
    assert r["story_options"]["label_noise"] == 0.3 and r["story_options"]["label_noise_kind"] == "confusable"
    assert r["technique_state_bytes"] == 180 * 10 * 4          # the per-sample soft targets
