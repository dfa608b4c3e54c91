"""Verification metrics on hand-made distances where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from facegate.convert.metrics import best_threshold, rates, tar_at_far, ten_fold, threshold_at_far


def test_best_threshold_separates_separable_pairs() -> None:
    d = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    same = np.array([1, 1, 1, 0, 0, 0], bool)
    t = best_threshold(d, same)
    assert 0.3 < t < 0.7


def test_ten_fold_scores_each_fold_with_the_others_threshold() -> None:
    rng = np.random.default_rng(1)
    same = np.tile([True] * 30 + [False] * 30, 10)
    d = np.where(same, rng.normal(0.4, 0.05, same.size), rng.normal(0.8, 0.05, same.size))
    folds = np.repeat(np.arange(10), 60)
    d[0] = 5.0  # one same-person pair that fails (e.g. no face found)
    result = ten_fold(d, same, folds)
    assert result["accuracy"] == pytest.approx(1 - 1 / 600)
    assert result["fold_accuracies"][0] == pytest.approx(59 / 60, abs=1e-4)


def test_threshold_at_far_allows_exactly_that_many_false_accepts() -> None:
    impostor = np.linspace(0.5, 1.5, 1000)
    genuine = np.linspace(0.1, 0.6, 100)
    d = np.concatenate([genuine, impostor])
    same = np.concatenate([np.ones(100, bool), np.zeros(1000, bool)])
    t = threshold_at_far(d, same, 1e-2)
    tar, far = rates(d, same, t)
    assert far == pytest.approx(0.01)
    assert tar == pytest.approx(np.mean(genuine < t))
    out = tar_at_far(d, same)
    assert out["0.001"]["far"] == pytest.approx(0.001)
    assert out["0.001"]["tar"] <= out["0.01"]["tar"]
