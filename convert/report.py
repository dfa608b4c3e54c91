"""``facegate evaluate report``: which model to choose, at a glance.

For every model given, the same pairs go through the full device pipeline
(detect, landmarks, align at the model's own chip size, encode). The report
is a Markdown file with a table (accuracy, TAR at FAR 1e-2 and 1e-3, size,
ms per face) and PNG figures: ROC (TAR against FAR, log FAR), DET (false
reject against false accept, log-log) and each model's histograms of
same-person and different-person distances.
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

import numpy as np

from facegate.convert.evaluate import DetectAlign, pair_distances
from facegate.convert.metrics import tar_at_far, ten_fold
from facegate.encoder import Encoder
from facegate.perception import Perception


def _curve(distances: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, TAR) at every threshold, accepting distance < t."""
    finite = np.where(np.isfinite(distances), distances, 10.0)
    thresholds = np.unique(finite)
    genuine, impostor = np.sort(finite[same]), np.sort(finite[~same])
    tar = np.searchsorted(genuine, thresholds, side="left") / max(len(genuine), 1)
    far = np.searchsorted(impostor, thresholds, side="left") / max(len(impostor), 1)
    return far, tar


def _ms_per_face(encoder: Encoder, chips: np.ndarray, runs: int = 50) -> float:
    encoder.descriptors(chips[:1])
    times = []
    for i in range(runs):
        t0 = time.perf_counter()
        encoder.descriptors(chips[i % len(chips)][None])
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def build_report(
    models: list[pathlib.Path],
    root: pathlib.Path,
    pairs_file: pathlib.Path,
    out_dir: pathlib.Path,
    folds: set[int] | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for path in models:
        encoder = Encoder(path, num_threads=threads)
        card = encoder.card
        perception = Perception.for_encoder(card)
        d = pair_distances(encoder, root, pairs_file, DetectAlign(perception), folds)
        same = d.same.astype(bool)
        accuracy: Any = ten_fold(d.distances, same, d.folds)["accuracy"]
        rates = tar_at_far(d.distances, same)
        chips = np.random.default_rng(0).integers(
            0, 256, (8, card.chip_size, card.chip_size, 3), dtype=np.uint8
        )
        rows.append(
            {
                "model": card.name,
                "accuracy": float(accuracy),
                "tar_far_1e-2": rates["0.01"]["tar"],
                "tar_far_1e-3": rates["0.001"]["tar"],
                "mb": path.stat().st_size / 1e6,
                "ms_per_face": _ms_per_face(encoder, chips),
                "failed_images": len(d.failed),
            }
        )
        curves[card.name] = (d.distances, same)
        fig, ax = plt.subplots(figsize=(6, 3.5))
        finite = np.isfinite(d.distances)
        bins = np.linspace(0, 1.6, 81).tolist()
        ax.hist(d.distances[finite & same], bins, alpha=0.6, label="same person")
        ax.hist(d.distances[finite & ~same], bins, alpha=0.6, label="different people")
        threshold = card.thresholds.get("far_0.001", {}).get("threshold")
        if threshold:
            ax.axvline(threshold, color="k", linestyle="--", label=f"shipped threshold {threshold:.3f}")
        ax.set_xlabel("distance")
        ax.set_ylabel("pairs")
        ax.set_title(card.name)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / f"hist-{card.name}.png", dpi=100)
        plt.close(fig)
    for kind in ("roc", "det"):
        fig, ax = plt.subplots(figsize=(5, 4))
        for name, (dist, same) in curves.items():
            far, tar = _curve(dist, same)
            if kind == "roc":
                ax.plot(np.maximum(far, 1e-4), tar, label=name)
            else:
                ax.plot(np.maximum(far, 1e-4), np.maximum(1 - tar, 1e-4), label=name)
        ax.set_xscale("log")
        ax.set_xlabel("false accept rate")
        if kind == "roc":
            ax.set_ylabel("true accept rate")
        else:
            ax.set_yscale("log")
            ax.set_ylabel("false reject rate")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        ax.set_title("ROC" if kind == "roc" else "DET")
        fig.tight_layout()
        fig.savefig(out_dir / f"{kind}.png", dpi=100)
        plt.close(fig)
    scope = f"folds {min(folds)}-{max(folds)}" if folds else "all folds"
    lines = [
        "# Model report",
        "",
        f"`{root.name}/{pairs_file.name}`, {scope}; every image through the device pipeline "
        f"(BlazeFace, dlib 5-point landmarks, alignment at each model's chip size). "
        f"Encoder speed: median of 50 single-face calls, {threads} thread(s), this machine.",
        "",
        "| model | accuracy | TAR at FAR 1e-2 | TAR at FAR 1e-3 | size | ms per face | failed images |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {100 * r['accuracy']:.2f}% | {100 * r['tar_far_1e-2']:.2f}% | "
            f"{100 * r['tar_far_1e-3']:.2f}% | {r['mb']:.2f} MB | {r['ms_per_face']:.2f} | "
            f"{r['failed_images']} |"
        )
    lines += ["", "![ROC](roc.png) ![DET](det.png)", ""]
    lines += [f"![{r['model']}](hist-{r['model']}.png)" for r in rows]
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    return {"report": str(out_dir / "report.md"), "models": rows}
