"""Issue 20: deciding a track from several frames' embeddings against one frame's, at the
same false accept rate.

Tracks are built from photos, not video: the dev sets hold no labelled video. Each
identity's probe photos (all but the enrolled first one, in name order) are cut into
tracks of ``--length`` photos; a stranger track is ``--length`` photos of one person of the
other set. So a "track" here is several photos of one identity presented as a track: more
varied than consecutive frames of one visit (which makes aggregation look better than
on a camera, where frames are near copies), and the figures say so.

Rules, each with its threshold chosen so that the same share of stranger tracks is named
(FPIR 1% and 0.1%), with 95% bootstrap intervals over identities:
  first    the track's first photo alone (the single-frame decision)
  vote     named when a majority of the frames name the same person under the threshold
           (the daemon's rule: 3 of 5 votes, here the majority of --length)
  mean     the normalised mean of the frames' embeddings
  quality  the same, each frame weighted by its face's quality (size, frontality, sharpness)

Reads the npz files of ``augment_enroll.py embed`` (view 0 is the plain chip):
    .venv/bin/python scripts/dev/track_aggregate.py /tmp/aug --length 3
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

from facegate.convert.metrics import threshold_at_rate
from facegate.modelcard import MODELS_DIR

QUALITY = ("eye_distance", "yaw", "sharpness", "score")
SINGLE_FACE_THRESHOLD = json.loads((MODELS_DIR / "dlib_resnet_v1_int8.json").read_text())["thresholds"][
    "far_0.001"
]["threshold"]


def quality_weight(q: np.ndarray) -> np.ndarray:
    """Per frame: larger, more frontal and sharper faces count more (each factor in 0.2..1)."""
    eye, yaw, sharp, _ = q.T
    size = np.clip(eye / 48.0, 0.2, 1.0)
    frontal = np.clip(1.0 - np.abs(yaw) / 0.45, 0.2, 1.0)
    crisp = np.clip(sharp / 40.0, 0.2, 1.0)
    return size * frontal * crisp


def load(path: pathlib.Path) -> dict[str, list[tuple[str, np.ndarray, np.ndarray]]]:
    data = np.load(path)
    out: dict[str, list[tuple[str, np.ndarray, np.ndarray]]] = {}
    for p, v, q in zip(data["paths"].tolist(), data["views"], data["quality"]):
        out.setdefault(p.split("/")[0], []).append((p, v[0], q))
    return out


def tracks(
    images: list[tuple[str, np.ndarray, np.ndarray]], length: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    return [
        (
            np.stack([v for _, v, _ in images[i : i + length]]),
            np.stack([q for _, _, q in images[i : i + length]]),
        )
        for i in range(0, len(images) - length + 1, length)
    ]


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def scores(rule: str, gallery: np.ndarray, frames: np.ndarray, quality: np.ndarray) -> tuple[int, float]:
    """(nearest identity, score): the track is named that identity when score < threshold."""
    if rule in ("mean", "quality"):
        w = quality_weight(quality) if rule == "quality" else np.ones(len(frames))
        probe = unit((frames * w[:, None]).sum(axis=0))
        d = np.linalg.norm(gallery - probe, axis=1)
        return int(np.argmin(d)), float(d.min())
    d = np.linalg.norm(gallery[None, :, :] - frames[:, None, :], axis=2)  # frames x gallery
    if rule == "first":
        return int(np.argmin(d[0])), float(d[0].min())
    need = len(frames) // 2 + 1  # a majority of the frames
    nearest = np.argmin(d, axis=1)
    best, score = -1, float("inf")
    for g in set(nearest.tolist()):
        mine = np.sort(d[nearest == g, g])
        if len(mine) >= need and mine[need - 1] < score:
            best, score = g, float(mine[need - 1])
    return best, score


def evaluate(
    enrolled: dict[str, list[tuple[str, np.ndarray, np.ndarray]]],
    strangers: dict[str, list[tuple[str, np.ndarray, np.ndarray]]],
    length: int,
    rounds: int = 500,
) -> dict[str, object]:
    names = sorted(n for n, imgs in enrolled.items() if len(imgs) >= 1 + length)
    gallery = np.stack([enrolled[n][0][1] for n in names])
    genuine = [(i, t) for i, n in enumerate(names) for t in tracks(enrolled[n][1:], length)]
    foreign = [(s, t) for s in sorted(strangers) for t in tracks(strangers[s], length)]
    g_owner = np.array([i for i, _ in genuine])
    s_groups: dict[str, list[int]] = {}
    for k, (s, _) in enumerate(foreign):
        s_groups.setdefault(s, []).append(k)
    g_groups = [np.flatnonzero(g_owner == i) for i in range(len(names))]
    g_groups = [g for g in g_groups if len(g)]
    sg = [np.array(v) for v in s_groups.values()]
    out: dict[str, object] = {
        "gallery": len(names),
        "genuine_tracks": len(genuine),
        "stranger_tracks": len(foreign),
        "stranger_identities": len(sg),
        "length": length,
    }
    rng = np.random.default_rng(0)
    picks = [
        (
            np.concatenate([g_groups[i] for i in rng.integers(0, len(g_groups), len(g_groups))]),
            np.concatenate([sg[i] for i in rng.integers(0, len(sg), len(sg))]),
        )
        for _ in range(rounds)
    ]
    for rule in ("first", "vote", "mean", "quality"):
        g = [scores(rule, gallery, f, q) for _, (f, q) in genuine]
        correct = np.array([best == i for (best, _), (i, _) in zip(g, genuine)])
        g_score = np.array([s for _, s in g])
        s_score = np.array([scores(rule, gallery, f, q)[1] for _, (f, q) in foreign])
        figures: dict[str, object] = {
            "rank1": round(float(correct.mean()), 4),
            # the share of stranger tracks named at the card's single-face threshold
            "fpir_at_single_face_threshold": round(float((s_score < SINGLE_FACE_THRESHOLD).mean()), 4),
        }
        for fpir in (1e-2, 1e-3):
            t = threshold_at_rate(s_score, fpir)
            value = float((correct & (g_score < t)).mean())
            reps = []
            for gi, si in picks:
                tt = threshold_at_rate(s_score[si], fpir)
                reps.append(float((correct[gi] & (g_score[gi] < tt)).mean()))
            figures[f"dir_at_fpir_{fpir:g}"] = {
                "value": round(value, 4),
                "ci95": [
                    round(float(np.percentile(reps, 2.5)), 4),
                    round(float(np.percentile(reps, 97.5)), 4),
                ],
                "threshold": round(t, 4),
            }
        out[rule] = figures
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=pathlib.Path)
    parser.add_argument("--length", type=int, default=3)
    args = parser.parse_args()
    celeba, lfw = load(args.folder / "celeba.npz"), load(args.folder / "lfw.npz")
    result = {
        "celeba-dev gallery, lfw-dev stranger tracks": evaluate(celeba, lfw, args.length),
        "lfw-dev gallery, celeba-dev stranger tracks": evaluate(lfw, celeba, args.length),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
