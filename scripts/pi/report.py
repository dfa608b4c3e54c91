"""Gather scripts/pi-check's results into one Markdown page (docs/results/pi-check.md with --record).

    python scripts/pi/report.py build/pi-check bookworm-arm64 [trixie-arm64 ...]

Each root's summary.txt (key=value lines written by scripts/pi/inside.sh and pi-check)
becomes a column; the parity table (build/pi-check/parity.md) follows.
"""

from __future__ import annotations

import datetime
import pathlib
import platform
import subprocess
import sys

ROWS = [
    ("os", "OS in the root"),
    ("machine", "CPU (emulated)"),
    ("python", "Python"),
    ("package_numpy", "numpy"),
    ("package_ai-edge-litert", "ai-edge-litert"),
    ("package_tflite-runtime", "tflite-runtime"),
    ("package_pillow", "Pillow"),
    ("package_pyyaml", "PyYAML"),
    ("package_paho-mqtt", "paho-mqtt"),
    ("root_build_s", "root build, s (0: cached)"),
    ("install_s", "venv + wheel install, s"),
    ("demo_result", "`facegate demo`"),
    ("demo_s", "demo, s"),
    ("doctor_result", "`facegate doctor`"),
    ("installer", "`install.sh` with DESTDIR"),
    ("installer_picamera2", "installer on picamera2"),
    ("unit_verify", "staged unit, `systemd-analyze verify`"),
    ("tests_result", "`pytest -m pi`"),
    ("tests_s", "tests, s"),
    ("parity_s", "parity images, s"),
    ("bench_summary", "`facegate bench summary` runs"),
    ("check_s", "whole check in the root, s"),
    ("failed", "failed steps"),
]


def read_summary(path: pathlib.Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = value.strip()
    return values


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    work, targets = pathlib.Path(argv[0]), argv[1:]
    columns = {t: read_summary(work / t / "summary.txt") for t in targets}
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    out = [
        "# facegate on Raspberry Pi OS's bases, emulated (`scripts/pi-check`)",
        "",
        f"Made by `sudo scripts/pi-check --record {' '.join(targets)}` at commit {commit or '?'} "
        f"on {datetime.date.today().isoformat()}; host {platform.machine()}, "
        f"Python {platform.python_version()}.",
        "Each root is Debian's (Raspberry Pi OS is Debian plus Raspberry Pi's own packages) run under",
        "qemu-user-static. Times are emulated and say nothing about a Raspberry Pi's speed.",
        "",
        "| | " + " | ".join(targets) + " |",
        "|---|" + "---|" * len(targets),
    ]
    for key, label in ROWS:
        cells = [columns[t].get(key, "") for t in targets]
        if any(cells):
            out.append(f"| {label} | " + " | ".join(c.replace("|", "/") or "-" for c in cells) + " |")
    parity = work / "parity.md"
    if parity.exists():
        out += ["", "## Parity with this machine", "", parity.read_text(encoding="utf-8").rstrip()]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
