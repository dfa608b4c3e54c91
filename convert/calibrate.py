"""``facegate calibrate``: the distance threshold for a target false accept rate.

The threshold is written into the model card under ``thresholds`` with what
it was measured on, so the device names its operating point by FAR.
"""

from __future__ import annotations

import pathlib
from typing import Any

from convert.evaluate import ChipSource, pair_distances
from convert.metrics import rates, threshold_at_far
from edge.encoder import Encoder
from edge.modelcard import write_card


def calibrate(
    encoder: Encoder,
    root: pathlib.Path,
    pairs_file: pathlib.Path,
    source: ChipSource,
    far: float,
    write: bool = True,
) -> dict[str, Any]:
    d = pair_distances(encoder, root, pairs_file, source)
    threshold = threshold_at_far(d.distances, d.same, far)
    tar, measured = rates(d.distances, d.same, threshold)
    entry = {
        "target_far": far,
        "threshold": round(threshold, 6),
        "far": measured,
        "tar": tar,
        "pairs": len(d.distances),
        "failed_images": len(d.failed),
        "measured_on": f"{root.name}/{pairs_file.name}",
        "alignment": source.description,
    }
    if write:
        card = dict(encoder.card.data)
        card["thresholds"] = {**card.get("thresholds", {}), f"far_{far:g}": entry}
        write_card(encoder.card.path, card)
    return entry
