"""The standing bench (facegate.bench.door) on an older checkout and on this one, alternately.

    git worktree add /tmp/before 1b9d0e8        # the commit before decided faces were followed
    .venv/bin/python scripts/dev/standing_before_after.py /tmp/before [--rounds 2] [--seconds 60]

Each checkout's `facegate` namespace is laid out with links (as scripts/typecheck does) and
put first on PYTHONPATH of a child process; this checkout's bench/door.py drives both (it
uses only the daemon, the config and the demo's scene and broker, which both have). Rounds
alternate: before, after, before, after. Prints the daemon's CPU seconds per run and the
events a subscriber received.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHILD = """
import json, runpy, sys
door = runpy.run_path(sys.argv[1])
report = door["bench_standing"](seconds=float(sys.argv[2]), rounds=1, settings=json.loads(sys.argv[3]))
print("RESULT" + json.dumps(report["results"]))
"""


def layout(checkout: pathlib.Path, into: pathlib.Path) -> pathlib.Path:
    root = into / "facegate"
    root.mkdir(parents=True)
    for path in (checkout / "edge").iterdir():
        if path.suffix == ".py" or path.is_dir():
            (root / path.name).symlink_to(path.resolve())
    for sub in ("convert", "bench", "demo", "models"):
        (root / sub).symlink_to((checkout / sub).resolve())
    return into


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("before", type=pathlib.Path, help="a checkout of the earlier commit")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    runs = {
        "before": (args.before, {"before (its settings)": {}}),
        "after": (ROOT, {"every frame (recheck_s 0)": {"recheck_s": 0.0}, "followed (shipped)": {}}),
    }
    rows: dict[str, list[tuple[float, list[Any]]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {name: layout(checkout, pathlib.Path(tmp) / name) for name, (checkout, _) in runs.items()}
        for _ in range(args.rounds):
            for name, (_, settings) in runs.items():
                env = {**os.environ, "PYTHONPATH": str(paths[name])}
                done = subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        CHILD,
                        str(ROOT / "bench" / "door.py"),
                        str(args.seconds),
                        json.dumps(settings),
                    ],
                    env=env,
                    capture_output=True,
                    text=True,
                    cwd=tmp,
                    check=False,
                )
                found = [line for line in done.stdout.splitlines() if line.startswith("RESULT")]
                if not found:
                    print(done.stderr[-3000:], file=sys.stderr)
                    return 1
                for result in json.loads(found[0][len("RESULT") :]):
                    rows.setdefault(f"{name}: {result['setting']}", []).append(
                        (result["cpu_s"], result["events"])
                    )
    for name, got in rows.items():
        cpu = sorted(c for c, _ in got)
        steady = "" if all(e == got[0][1] for _, e in got) else " (NOT the same every round)"
        print(
            f"{name}: CPU s per round {', '.join(f'{c:.2f}' for c, _ in got)}; "
            f"median {cpu[len(cpu) // 2]:.2f}; events {got[0][1]}{steady}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
