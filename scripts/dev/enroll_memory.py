"""Peak memory of `facegate enroll` handed a large file that is not a photo (a video named by
mistake), then one photo to keep.

    .venv/bin/python scripts/dev/enroll_memory.py [--mb 512]

A sparse file of ``--mb`` MB (nothing on the disk) named ``clip.mp4``, then the bundled
obama.jpg, enrolled with ``--keep-images`` into a new gallery by a child process, which
prints its own peak resident memory (``VmHWM``; ``ru_maxrss`` can carry a forking parent's
over). For the code before 4183784 (the file read whole): ``git checkout 4183784^`` in a clean
checkout (the editable install follows it), run this file as it is now, then check main out again.
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import tempfile

from facegate.demo import PHOTOS

CHILD = (
    "import re, sys; from facegate.cli import main; status = main(sys.argv[1:]); "
    "peak = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1); "
    "print(int(peak) // 1024, status)"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=512)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clip = pathlib.Path(tmp) / "clip.mp4"
        with clip.open("wb") as f:
            f.truncate(args.mb << 20)
        argv = ["--gallery", f"{tmp}/g.db", "enroll", "obama", str(clip), str(PHOTOS / "obama.jpg")]
        done = subprocess.run(
            [sys.executable, "-c", CHILD, *argv, "--keep-images"], capture_output=True, text=True
        )
    peak_mb, status = done.stdout.split()[-2:]
    print(f"{args.mb} MB file, then one photo: peak {peak_mb} MB (VmHWM), exit status {status}")


if __name__ == "__main__":
    main()
