#!/usr/bin/env bash
# The venv the service runs in, with facegate installed: systemd/install.sh and
# scripts/pi-check both make it this way.
#
#   systemd/venv.sh VENV REQUIREMENT... [PIP OPTION...]
#
# --system-site-packages: the venv sees the distribution's picamera2 (libcamera has no
# wheels). picamera2's compiled helpers (simplejpeg) are built against the distribution's
# numpy, and a newer numpy in the venv shadows it: `import picamera2` then fails with
# "numpy.dtype size changed" (raspberrypi/picamera2 #1088, #1211). So numpy is held at the
# distribution's version when it has one; ai-edge-litert (numpy >= 1.23.2) and
# tflite-runtime 2.14 (numpy < 2) both run on bookworm's 1.24.2 (scripts/pi-check).
set -euo pipefail
[ $# -ge 2 ] || { sed -n '5p' "$0" >&2; exit 2; }
venv=$1; shift
python=${PYTHON:-python3}
[ -x "$venv/bin/python" ] || "$python" -m venv --system-site-packages "$venv"
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
if system_numpy=$("$python" -c 'import numpy; print(numpy.__version__)' 2>/dev/null); then
  echo "numpy==$system_numpy" > "$constraints"
  echo "facegate-install: numpy held at the system's $system_numpy (picamera2 is built against it)"
fi
"$venv/bin/pip" install --disable-pip-version-check -c "$constraints" "$@"
