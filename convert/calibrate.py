"""``facegate calibrate``: the distance threshold for a target false accept rate.

The threshold is written into the model card under ``thresholds`` keyed by
the target FAR (``far_0.001``), with what it was measured on, so the device
names its operating point by FAR. The same pairs fit the card's ``score``:
P(same | distance), a one-feature logistic fit shown next to decisions.

``folds`` calibrates on part of a pairs file (e.g. 0-4) so the rest can
measure it; ``all_pairs`` uses every pair among those folds' identities
instead of the listed ones (far more impostor pairs, a steadier threshold).

``calibrate_tracks`` (``--track-frames N``, issue 20): the threshold for
``decision.aggregate: mean``, where a track is decided from the normalised mean of
N faces' embeddings. On the identities only the selected folds name, each
identity's first image is enrolled and the rest, in name order, are cut into
tracks of N photos; every (template, track mean) pair is scored, so identities
with too few photos for a track still serve as impostor templates. Photos of one
person are more varied than the frames of one visit, so the threshold errs on the
strict side for a camera (its frames' mean is nearer a single frame's). Written to
``track_thresholds`` in the card; with the card already holding one, the rates at
that threshold are reported too (measure it on other folds with ``--dry-run``).
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from facegate.convert.evaluate import (
    ChipSource,
    all_pair_distances,
    embed_images,
    own_identity_images,
    pair_distances,
)
from facegate.convert.head import fit_score
from facegate.convert.identify import group_by_identity
from facegate.convert.metrics import rates, threshold_at_far, wilson_interval
from facegate.decide import far_key, unit_distance
from facegate.encoder import Encoder
from facegate.errors import FacegateError
from facegate.modelcard import write_card


def calibrate(
    encoder: Encoder,
    root: pathlib.Path,
    pairs_file: pathlib.Path,
    source: ChipSource,
    far: float,
    write: bool = True,
    folds: set[int] | None = None,
    all_pairs: bool = False,
) -> dict[str, Any]:
    if all_pairs:
        d = all_pair_distances(encoder, root, pairs_file, source, folds or set(range(10)))
    else:
        d = pair_distances(encoder, root, pairs_file, source, folds)
    threshold = threshold_at_far(d.distances, d.same, far)
    tar, measured = rates(d.distances, d.same, threshold)
    impostors = int((~d.same).sum())
    entry = {
        "target_far": far,
        "threshold": round(threshold, 6),
        "far": measured,
        "tar": tar,
        "impostor_pairs": impostors,
        "genuine_pairs": int(d.same.sum()),
        "failed_images": len(d.failed),
        "measured_on": f"{root.name}/{pairs_file.name}"
        + (f" folds {min(folds)}-{max(folds)}" if folds else "")
        + (" (all pairs among those folds' own identities)" if all_pairs else ""),
        "alignment": source.description,
    }
    if write:
        card = dict(encoder.card.data)
        card["thresholds"] = {**card.get("thresholds", {}), far_key(far): entry}
        card["score"] = {
            **fit_score(d.distances, d.same),
            "meaning": "P(same person | distance d) = 1 / (1 + exp(-(a + b * d)))",
            "fitted_on": entry["measured_on"],
        }
        write_card(encoder.card.path, card)
    return entry


def track_distances(
    embeddings: dict[str, np.ndarray], frames: int
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(distances, same, identities, tracks): every identity's first image enrolled, against
    every track mean of ``frames`` of an identity's other images (identities with fewer
    images are enrolled only: impostor templates)."""
    people = {n: [embeddings[k] for k in keys] for n, keys in group_by_identity(embeddings).items()}
    names = sorted(people)
    templates = np.stack([people[n][0] for n in names]).astype(np.float64)
    means, owners = [], []
    for i, n in enumerate(names):
        rest = people[n][1:]
        for k in range(0, len(rest) - frames + 1, frames):
            mean = np.mean(rest[k : k + frames], axis=0)
            means.append(mean / np.linalg.norm(mean))
            owners.append(i)
    if len(names) < 2 or not means:
        raise FacegateError(
            f"need 2+ identities, one with {1 + frames}+ usable images, for {frames}-frame tracks"
        )
    gram = np.clip(templates @ np.stack(means).astype(np.float64).T, -1.0, 1.0)
    distances = unit_distance(gram).ravel()
    same = (np.arange(len(names))[:, None] == np.array(owners)[None, :]).ravel()
    return distances, same, len(names), len(means)


def calibrate_tracks(
    encoder: Encoder,
    root: pathlib.Path,
    pairs_file: pathlib.Path,
    source: ChipSource,
    far: float,
    frames: int,
    write: bool = True,
    folds: set[int] | None = None,
) -> dict[str, Any]:
    if frames < 2:
        raise FacegateError(f"--track-frames must be 2 or more, got {frames}")
    folds = folds or set(range(10))
    embeddings, failed = embed_images(encoder, root, own_identity_images(root, pairs_file, folds), source)
    distances, same, identities, tracks = track_distances(embeddings, frames)
    threshold = threshold_at_far(distances, same, far)
    tar, measured = rates(distances, same, threshold)
    entry: dict[str, Any] = {
        "target_far": far,
        "frames": frames,
        "threshold": round(threshold, 6),
        "far": measured,
        "tar": tar,
        "impostor_pairs": int((~same).sum()),
        "genuine_pairs": int(same.sum()),
        "identities": identities,
        "tracks": tracks,
        "failed_images": len(failed),
        "measured_on": f"{root.name}/{pairs_file.name} folds {min(folds)}-{max(folds)}: each identity's "
        f"first image enrolled, the rest cut into tracks of {frames} photos (all pairs)",
        "alignment": source.description,
    }
    shipped = encoder.card.data.get("track_thresholds", {}).get(far_key(far))
    if shipped and int(shipped.get("frames", 0)) == frames:
        tar_s, far_s = rates(distances, same, float(shipped["threshold"]))
        false_accepts = round(far_s * int((~same).sum()))
        entry["at_card_threshold"] = {
            "threshold": shipped["threshold"],
            "far": far_s,
            "far_ci95": wilson_interval(false_accepts, int((~same).sum())),
            "false_accepts": false_accepts,
            "tar": tar_s,
        }
    if write:
        card = dict(encoder.card.data)
        card["track_thresholds"] = {**card.get("track_thresholds", {}), far_key(far): entry}
        write_card(encoder.card.path, card)
    return entry
