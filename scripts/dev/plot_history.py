"""DEV: plot a training run's history.json (loss, active triplets, validation accuracy).

python scripts/dev/plot_history.py RUN/history.json OUT.png [--title TEXT]
"""

from __future__ import annotations

import argparse
import json
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("history", type=pathlib.Path)
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--title", default="")
    args = parser.parse_args()
    history = json.loads(args.history.read_text())
    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(epochs, [h["loss"] for h in history], label="loss")
    left.plot(epochs, [h["active_triplets"] for h in history], label="active triplets")
    if any(h["distill_loss"] for h in history):
        left.plot(epochs, [h["distill_loss"] for h in history], label="distillation loss")
    left.set_xlabel("epoch")
    left.legend()
    right.plot(epochs, [100 * h["val_accuracy"] for h in history], marker="o")
    right.axhline(50, color="grey", linestyle=":", label="chance")
    right.set_xlabel("epoch")
    right.set_ylabel("held-out pair accuracy (%)")
    right.legend()
    fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)


if __name__ == "__main__":
    main()
