"""Online accuracy counts only the stream's samples that have a label (story unlabelled: most have none)."""
import simpy

from simulator.pipeline import PipelineStats, sink
from simulator.run import run_scenario
from simulator.scenario import apply_overrides, scenario_dict
from workloads.datasets import UNLABELLED


def test_sink_skips_samples_without_a_label():
    env = simpy.Environment()
    results = simpy.Store(env, capacity=10)
    stats = PipelineStats()
    for item in [(3, 3), (3, UNLABELLED), (1, 2), (0, UNLABELLED), (None, 4), (5, 5)]:
        results.put(item)
    env.process(sink(results, stats))
    env.run()
    assert (stats.sunk, stats.online_correct) == (3, 2)      # (3,3), (1,2), (5,5); unlabelled and dropped skipped


def test_unlabelled_scenario_online_accuracy_is_over_labelled_samples():
    """With 10 % labelled, counting the unlabelled samples (label -1: never right) would pull the online
    accuracy below the labelled share; over the labelled samples it is the model's hit rate."""
    d = apply_overrides(scenario_dict("unlabelled"), {"duration_s": 1200.0})
    r = run_scenario(d, compare=False)
    assert r["online_accuracy"] is not None and r["online_accuracy"] > 0.3
