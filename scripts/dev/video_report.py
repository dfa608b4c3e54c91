"""DEV: what the daemon decides on a video, with the nearest enrolled person per track.

Runs the daemon's own ``step`` on every frame (no broker needed) and prints
each decided event plus, for ``unknown`` ones, the nearest enrolled person
and distance (the published event does not name them).

    python scripts/dev/video_report.py VIDEO --gallery G.db [--detector full] [--aggregate mean]
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

from facegate.config import validate
from facegate.daemon import Daemon
from facegate.decide import identify


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("video")
    parser.add_argument("--gallery", required=True)
    parser.add_argument("--detector", default="short")
    parser.add_argument("--aggregate", choices=("votes", "mean"), default="votes")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    config = validate(
        {
            "camera": {"source": "video", "path": args.video},
            "models": {"detector": args.detector},
            "gallery": {"path": args.gallery},
            "mqtt": {"outbox": f"{tmp}/outbox"},
            "idle": {"motion_threshold": 0},
            "decision": {"aggregate": args.aggregate},
        }
    )
    daemon = Daemon(config)
    daemon.link.publish_event = lambda event: None  # type: ignore[method-assign]
    daemon.link.publish_state = lambda state: None  # type: ignore[method-assign]
    frames = 0
    for frame in daemon.source.frames():
        frames += 1
        events = daemon.step(frame)
        faces = daemon.perception.faces(frame.image, frame.layout) if events else []
        for event in events:
            track, who = event.get("track"), event["identity"]
            line = f"frame {frame.index:4d} track {track}: {who} d={event['distance']}"
            if event["identity"] == "unknown" and faces:
                box = np.array(event["box"])
                face = min(faces, key=lambda f: float(np.abs(np.array(f.detection.box) - box).sum()))
                found = identify(daemon.gallery.templates(), daemon.encoder.embed(face.chip)[0], daemon.op)
                line += f" (nearest {found.nearest} at {found.distance:.3f})"
            print(line)
    print(f"{frames} frames, counts {daemon.counts}, threshold {daemon.op.threshold:.4f}")
    daemon.source.close()


if __name__ == "__main__":
    main()
