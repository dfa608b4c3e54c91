"""``facegate calibrate``: the distance threshold for a target false accept rate.

The threshold is written into the model card under ``thresholds`` keyed by
the target FAR (``far_0.001``), with what it was measured on, so the device
names its operating point by FAR. The same pairs fit the card's ``score``:
P(same | distance), a one-feature logistic fit shown next to decisions.

``folds`` calibrates on part of a pairs file (e.g. 0-4) so the rest can
measure it; ``all_pairs`` uses every pair among those folds' identities
instead of the listed ones (far more impostor pairs, a steadier threshold).
"""

from __future__ import annotations

import pathlib
from typing import Any

from facegate.convert.evaluate import ChipSource, all_pair_distances, pair_distances
from facegate.convert.head import fit_score
from facegate.convert.metrics import rates, threshold_at_far
from facegate.decide import far_key
from facegate.encoder import Encoder
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
