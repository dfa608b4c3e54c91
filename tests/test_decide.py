"""Decision functions, multi-frame tracking and verification heads, tested directly."""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib

import numpy as np
import pytest

from facegate.convert.evaluate import operating_point, parse_folds
from facegate.convert.head import abs_diff, chi_square, compare, fit_logistic, fit_score, logistic_score
from facegate.convert.metrics import wilson_interval
from facegate.decide import OperatingPoint, identify, verify
from facegate.encoder import Encoder
from facegate.errors import FacegateError
from facegate.gallery import Templates
from facegate.modelcard import load_card
from facegate.track import Judge, Observation, Tracker, TrackerConfig, iou
from tests.conftest import FLOAT_MODEL, INT8_MODEL

OP = OperatingPoint(1e-3, 0.4, score_a=20.0, score_b=-50.0)


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def _templates(n: int = 5, seed: int = 0) -> Templates:
    matrix = _unit(np.random.default_rng(seed).standard_normal((n, 128)))
    return Templates(tuple(f"p{i}" for i in range(n)), matrix)


def _near(v: np.ndarray, distance: float, seed: int = 1) -> np.ndarray:
    """A unit vector at exactly ``distance`` from unit vector ``v``."""
    noise = np.random.default_rng(seed).standard_normal(v.shape)
    ortho = _unit(noise - (noise @ v) * v)
    cos = 1 - distance**2 / 2
    return _unit(cos * v + math.sqrt(1 - cos**2) * ortho)


def test_verify_accepts_below_threshold_only() -> None:
    t = _templates()
    yes = verify(t, _near(t.matrix[2], 0.3), "p2", OP)
    no = verify(t, _near(t.matrix[2], 0.5), "p2", OP)
    assert yes.accepted and yes.distance == pytest.approx(0.3, abs=1e-5)
    assert not no.accepted and no.distance == pytest.approx(0.5, abs=1e-5)
    assert yes.threshold == 0.4 and yes.target_far == 1e-3
    assert yes.score > 0.5 > no.score  # calibrated score falls with distance


def test_verify_unknown_claim_and_bad_embedding() -> None:
    t = _templates()
    with pytest.raises(FacegateError, match="not enrolled"):
        verify(t, t.matrix[0], "nobody", OP)
    with pytest.raises(FacegateError, match="128 finite"):
        verify(t, np.zeros(64), "p0", OP)
    with pytest.raises(FacegateError, match="all zeros"):
        verify(t, np.zeros(128), "p0", OP)


def test_identify_nearest_margin_and_unknown() -> None:
    t = _templates()
    probe = _near(t.matrix[3], 0.2)
    found = identify(t, probe, OP)
    assert found.name == "p3" and found.nearest == "p3"
    d = np.linalg.norm(t.matrix - probe, axis=1)
    assert found.distance == pytest.approx(np.sort(d)[0], abs=1e-5)
    assert found.margin == pytest.approx(np.sort(d)[1] - np.sort(d)[0], abs=1e-5)
    assert found.second == t.names[int(np.argsort(d)[1])]
    stranger = identify(t, _near(t.matrix[3], 0.9), OP)
    assert stranger.name is None and stranger.nearest == "p3"


def test_identify_small_galleries() -> None:
    empty = Templates((), np.zeros((0, 128), np.float32))
    assert identify(empty, _unit(np.ones(128)), OP).name is None
    one = _templates(1)
    found = identify(one, one.matrix[0], OP)
    assert found.name == "p0" and found.second is None and math.isinf(found.margin)


def test_operating_point_comes_from_the_card_by_far() -> None:
    card = Encoder(INT8_MODEL).card
    op = OperatingPoint.from_card(card, 1e-3)
    assert op.threshold == card.thresholds["far_0.001"]["threshold"]
    with pytest.raises(FacegateError, match=r"no threshold calibrated for FAR 0\.5"):
        OperatingPoint.from_card(card, 0.5)


def test_operating_point_report_uses_the_shipped_threshold() -> None:
    card = load_card(INT8_MODEL.with_suffix(".json"))
    t = float(card.thresholds["far_0.001"]["threshold"])
    distances = np.array([t - 0.01, t + 0.01, t - 0.02, t + 0.5, t + 0.4])
    same = np.array([True, True, False, False, False])
    report = operating_point(distances, same, card, 1e-3)
    assert report["threshold"] == t  # not re-fitted on these pairs
    assert report["tar"] == 0.5 and report["false_accepts"] == 1 and report["impostor_pairs"] == 3


def test_wilson_interval_brackets_the_rate() -> None:
    lo, hi = wilson_interval(2, 1500)
    assert lo < 2 / 1500 < hi and lo > 0 and hi < 0.01
    assert wilson_interval(0, 100)[0] == 0.0


def test_parse_folds() -> None:
    assert parse_folds("0-4") == {0, 1, 2, 3, 4}
    assert parse_folds("5,7, 9") == {5, 7, 9}
    with pytest.raises(FacegateError, match="--folds"):
        parse_folds("first half")


# --- tracking ----------------------------------------------------------------

BOX = (100.0, 100.0, 200.0, 200.0)


def _moved(box: tuple[float, float, float, float], dx: float) -> tuple[float, float, float, float]:
    return (box[0] + dx, box[1], box[2] + dx, box[3])


def test_iou() -> None:
    assert iou(BOX, BOX) == 1.0
    assert iou(BOX, _moved(BOX, 200)) == 0.0
    assert iou(BOX, _moved(BOX, 50)) == pytest.approx(50 * 100 / (2 * 100 * 100 - 50 * 100))


def test_one_bad_frame_neither_admits_nor_rejects() -> None:
    tracker = Tracker(TrackerConfig(votes_to_decide=3, window=5))
    votes = ["alice", "bob", "alice", "alice", "alice", "alice"]
    decisions = []
    for i, vote in enumerate(votes):
        decisions += tracker.update([Observation(_moved(BOX, 3 * i), vote, distance=0.3)])
    assert len(decisions) == 1  # published once, not per frame
    assert decisions[0].name == "alice" and decisions[0].frames == 4


def test_a_single_wrong_frame_never_decides() -> None:
    tracker = Tracker(TrackerConfig(votes_to_decide=2, window=3))
    assert tracker.update([Observation(BOX, "mallory")]) == []
    assert tracker.update([]) == []  # the face is gone
    assert all(t.decided is None for t in tracker.tracks.values())


def test_gated_frames_add_no_vote_and_strangers_are_decided() -> None:
    tracker = Tracker(TrackerConfig(votes_to_decide=2, window=3))
    assert tracker.update([Observation(BOX, "alice", usable=False)]) == []
    assert tracker.update([Observation(BOX, None)]) == []
    decided = tracker.update([Observation(BOX, None)])
    assert len(decided) == 1 and decided[0].name is None and decided[0].frames == 3


def test_two_faces_keep_their_own_tracks() -> None:
    tracker = Tracker(TrackerConfig(votes_to_decide=2, window=3))
    left, right = BOX, _moved(BOX, 400)
    tracker.update([Observation(left, "alice"), Observation(right, "bob")])
    decided = tracker.update([Observation(_moved(right, 5), "bob"), Observation(_moved(left, -5), "alice")])
    assert sorted(str(d.name) for d in decided) == ["alice", "bob"]
    assert len({d.track for d in decided}) == 2


def test_lost_tracks_are_dropped_and_a_return_is_a_new_track() -> None:
    tracker = Tracker(TrackerConfig(votes_to_decide=1, window=1, max_missing=2))
    first = tracker.update([Observation(BOX, "alice")])
    for _ in range(3):
        tracker.update([])
    again = tracker.update([Observation(BOX, "alice")])
    assert first[0].track != again[0].track  # announced again after leaving


ALICE, STRANGER = np.eye(128)[0], np.eye(128)[1]  # unit faces sqrt(2) apart; frames 0.15 off them


def test_someone_else_in_a_decided_place_is_a_new_track_decided_once() -> None:
    """A stranger steps into alice's place (the boxes overlap, no frame is missed): alice's
    track ends and a new one is decided unknown, once, on as many votes as any track needs;
    then alice comes back into the stranger's place and is recognised, once."""
    tracker = Tracker(TrackerConfig(votes_to_decide=3, window=5, same_person=0.4))
    people = "AAA" + "SASS" + "SSSS" + "AAA" + "SA"
    decisions = []
    for i, who in enumerate(people):
        face, vote = (ALICE, "alice") if who == "A" else (STRANGER, None)
        seen = _near(face, 0.15, i)
        obs = Observation(_moved(BOX, i % 3), vote, distance=0.3 if vote else 0.6, embedding=seen)
        decisions += [(i, d) for d in tracker.update([obs])]
    assert [(i, d.name, d.votes) for i, d in decisions] == [(2, "alice", 3), (6, None, 3), (13, "alice", 3)]
    ids = [d.track for _, d in decisions]
    assert len(set(ids)) == 3 and list(tracker.tracks) == [ids[-1]]  # each ended track is gone


def test_a_decided_person_whose_names_waver_stays_one_track() -> None:
    """The same face getting other names now and then (unknown, a look-alike), or refused by
    a gate, is the same person; so is a face that changed (a turn, the light) and still gets
    the decided name: no new track, no second event. Someone else needs both: other names,
    from a face unlike the one decided."""
    tracker = Tracker(TrackerConfig(votes_to_decide=3, window=5, same_person=0.4))
    votes = ["bob"] * 3 + [None, "carol", None, None, "carol", None, "bob"]
    made = []
    for i, vote in enumerate(votes):
        made += tracker.update([Observation(BOX, vote, embedding=_near(ALICE, 0.15, i))])
    made += tracker.update([Observation(BOX, None, usable=False)])
    for i in range(5):  # bob turned or lit otherwise: far from the faces that decided him, still bob
        made += tracker.update([Observation(BOX, "bob", embedding=_near(ALICE, 0.6, 20 + i))])
    (track,) = tracker.tracks.values()
    assert [d.name for d in made] == ["bob"] and track.id == 1


def test_without_same_person_a_track_keeps_its_decision() -> None:
    tracker = Tracker(TrackerConfig(votes_to_decide=2, window=3))
    made = []
    for i, who in enumerate("AASSSS"):
        face, vote = (ALICE, "alice") if who == "A" else (STRANGER, None)
        made += tracker.update([Observation(BOX, vote, embedding=_near(face, 0.15, i))])
    assert [d.name for d in made] == ["alice"]


def test_mean_decisions_are_redecided_on_a_new_face_only() -> None:
    """With ``aggregate: mean`` a face decided unknown by its mean (at the stricter track
    threshold) whose single frames are named (at the single-face threshold) is still one
    person: decided once, not again and again. Someone else in a decided place is decided on
    their own faces."""

    def judge_within(limit: float) -> Judge:
        def judge(mean: np.ndarray) -> tuple[str | None, float]:
            distance = float(np.linalg.norm(mean - ALICE))
            return ("alice" if distance < limit else None), distance

        return judge

    strict = Tracker(TrackerConfig(votes_to_decide=3, window=5, aggregate="mean", same_person=0.4))
    made = []
    for i in range(12):  # each frame names alice; the mean of 3 (~0.09 off) misses 0.05
        made += strict.update(
            [Observation(BOX, "alice", embedding=_near(ALICE, 0.15, i))], judge_within(0.05)
        )
    assert [d.name for d in made] == [None]

    tracker = Tracker(TrackerConfig(votes_to_decide=3, window=5, aggregate="mean", same_person=0.4))
    made = []
    for i, who in enumerate("AAASSS"):
        face, vote = (ALICE, "alice") if who == "A" else (STRANGER, None)
        made += tracker.update([Observation(BOX, vote, embedding=_near(face, 0.15, i))], judge_within(0.2))
    assert [d.name for d in made] == ["alice", None] and made[0].track != made[1].track
    assert made[1].distance == pytest.approx(np.sqrt(2), abs=0.2)  # the newcomer's faces alone


def test_bad_tracker_config() -> None:
    with pytest.raises(ValueError, match="votes_to_decide"):
        TrackerConfig(votes_to_decide=6, window=5)
    with pytest.raises(ValueError, match="aggregate"):
        TrackerConfig(aggregate="median")
    with pytest.raises(ValueError, match="judge"):
        Tracker(TrackerConfig(aggregate="mean")).update([Observation(BOX, "alice")])


def test_mean_aggregate_decides_from_the_mean_of_the_first_usable_faces() -> None:
    """Three faces each too far from alice's template to name her alone, scattered around it:
    their mean is near it. Gated frames add nothing; the judge sees the normalised mean once."""
    t = _templates()
    alice = t.matrix[0]
    frames = [_near(alice, 0.5, seed=s) for s in (11, 12, 13)]
    assert all(identify(t, f, OP).name is None for f in frames)  # no single frame names her
    seen: list[np.ndarray] = []

    def judge(mean: np.ndarray) -> tuple[str | None, float]:
        seen.append(mean)
        found = identify(t, mean, OP)
        return found.name, found.distance

    tracker = Tracker(TrackerConfig(votes_to_decide=3, window=5, aggregate="mean"))
    decided = []
    observations = [
        Observation(BOX, None, True, 0.5, frames[0]),
        Observation(BOX, "p1", False, 0.2, _unit(t.matrix[1])),  # gated: not evidence
        Observation(BOX, None, True, 0.5, frames[1]),
        Observation(BOX, None, True, 0.5, frames[2]),
        Observation(BOX, None, True, 0.5, frames[2]),
    ]
    for i, obs in enumerate(observations):
        decided += tracker.update([dataclasses.replace(obs, box=_moved(BOX, i))], judge)
    assert len(seen) == 1 and np.linalg.norm(seen[0]) == pytest.approx(1.0)
    assert len(decided) == 1 and decided[0].name == "p0" and decided[0].frames == 4
    assert decided[0].distance < 0.4 and decided[0].votes == 3
    # with votes (the default) the same frames decide a stranger: each one alone is unknown
    voter = Tracker(TrackerConfig(votes_to_decide=3, window=5))
    out = []
    for i, obs in enumerate(observations):
        out += voter.update([dataclasses.replace(obs, box=_moved(BOX, i))], judge)
    assert [d.name for d in out] == [None]


def test_track_operating_point_needs_its_own_calibration(tmp_path: pathlib.Path) -> None:
    card = load_card(INT8_MODEL.with_suffix(".json"))
    entry = card.data.get("track_thresholds", {}).get("far_0.001")
    assert entry is not None, "the shipped card carries the 3-frame track threshold"
    op = OperatingPoint.for_tracks(card, 1e-3, entry["frames"])
    assert op.threshold == entry["threshold"] < OperatingPoint.from_card(card, 1e-3).threshold
    with pytest.raises(FacegateError, match="--track-frames 5"):
        OperatingPoint.for_tracks(card, 1e-3, 5)
    float32 = load_card(FLOAT_MODEL.with_suffix(".json"))  # calibrated the same way
    assert abs(OperatingPoint.for_tracks(float32, 1e-3, 3).threshold - op.threshold) < 0.01
    bare = dict(card.data)
    del bare["track_thresholds"]
    path = tmp_path / "card.json"
    path.write_text(json.dumps(bare))
    with pytest.raises(
        FacegateError, match=r"\(none\); run `facegate calibrate --far 0.001 --track-frames 3`"
    ):
        OperatingPoint.for_tracks(load_card(path), 1e-3, 3)


# --- verification heads --------------------------------------------------------


def test_features() -> None:
    a, b = np.array([[0.5, -0.2]]), np.array([[0.1, 0.2]])
    np.testing.assert_allclose(abs_diff(a, b), [[0.4, 0.4]])
    np.testing.assert_allclose(chi_square(a, b), [[0.16 / 0.6, 0.16 / 0.4]], rtol=1e-4)


def test_logistic_regression_learns_a_known_rule() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 3))
    y = (x[:, 0] - 2 * x[:, 1] + 0.5 > 0).astype(float)
    w = fit_logistic(x, y, l2=1e-4)
    assert np.mean((logistic_score(x, w) > 0.5) == y) > 0.97
    assert w[0] > 0 > w[1] and abs(w[2]) < 1.0  # the irrelevant feature stays small


def test_compare_scores_every_method_on_held_out_folds() -> None:
    rng = np.random.default_rng(0)
    n = 400
    a = _unit(rng.standard_normal((n, 128)))
    same = np.arange(n) % 2 == 0
    b = np.where(same[:, None], _unit(a + 0.3 * _unit(rng.standard_normal((n, 128)))), a[::-1])
    report = compare(a, b, same, np.arange(n) % 10)
    assert set(report) == {"distance", "logistic_abs_diff", "logistic_chi_square"}
    assert report["distance"]["accuracy"] > 0.95
    score = fit_score(np.linalg.norm(a - b, axis=1), same)
    assert score["b"] < 0  # probability of "same" falls with distance


def _with_negatives(t: Templates, negatives: list[tuple[int, np.ndarray]]) -> Templates:
    return Templates(
        t.names,
        t.matrix,
        np.array([v for _, v in negatives], np.float32).reshape(-1, 128),
        np.array([row for row, _ in negatives], np.intp),
    )


def test_a_correction_vetoes_faces_nearer_to_it_than_to_the_person() -> None:
    t = _templates()
    alice = t.matrix[2]
    stranger = _near(alice, 0.36, seed=3)  # within the threshold (0.4): named p2 before
    assert identify(t, stranger, OP).name == "p2"
    corrected = _with_negatives(t, [(2, stranger)])
    again = _near(stranger, 0.1, seed=4)  # the same stranger, another frame
    result = identify(corrected, again, OP)
    assert result.name is None and result.corrected and result.nearest == "p2"
    assert not verify(corrected, again, "p2", OP).accepted
    # alice herself stays alice: nearer her template than the correction
    for seed in range(5, 15):
        own = _near(alice, 0.2, seed=seed)
        assert identify(corrected, own, OP).name == "p2"
        assert verify(corrected, own, "p2", OP).accepted
    # a correction of p2 changes nothing for p3
    assert identify(corrected, _near(t.matrix[3], 0.2), OP).name == "p3"


def test_check_correction_refuses_faces_too_near_the_person() -> None:
    from facegate.decide import CORRECTION_GUARD, check_correction

    t = _templates()
    assert check_correction(t, "p1", _near(t.matrix[1], 0.39), OP) == pytest.approx(0.39, abs=1e-5)
    near = _near(t.matrix[1], CORRECTION_GUARD * OP.threshold - 0.01)
    with pytest.raises(FacegateError, match="correction refused"):
        check_correction(t, "p1", near, OP)
    with pytest.raises(FacegateError, match="not enrolled"):
        check_correction(t, "nobody", near, OP)
