"""ASHA, as the search configures it, stops a clearly worse trial at its first rung."""

from types import SimpleNamespace

from ray.tune.schedulers import ASHAScheduler, TrialScheduler


def test_asha_stops_the_worse_trial_early():
    scheduler = ASHAScheduler(metric="best_valid_score", mode="max", max_t=6, grace_period=1, reduction_factor=2)
    good, bad = SimpleNamespace(trial_id="good"), SimpleNamespace(trial_id="bad")
    for trial in (good, bad):
        scheduler.on_trial_add(None, trial)
    assert scheduler.on_trial_result(None, good, {"training_iteration": 1, "best_valid_score": 0.30}) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, bad, {"training_iteration": 1, "best_valid_score": 0.05}) == TrialScheduler.STOP
    assert scheduler.on_trial_result(None, good, {"training_iteration": 2, "best_valid_score": 0.31}) == TrialScheduler.CONTINUE
