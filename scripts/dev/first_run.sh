#!/usr/bin/env bash
# The newcomer's figures of issue 16, as they were measured: time from `make demo` on a fresh
# clone to the first MQTT event, the venv it made, the wheel's size and contents, and a device
# venv installed from that wheel. Set PIP_NO_CACHE_DIR=1 to measure without pip's cache.
#   scripts/dev/first_run.sh [WORKDIR]        (default: a new temporary folder)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-$(mktemp -d)}
git clone -q "$repo" "$work/clone"
cd "$work/clone"
start=$(date +%s.%N)
PYTHONUNBUFFERED=1 make demo 2>&1 | while IFS= read -r line; do
  printf '%6.1f %s\n' "$(echo "$(date +%s.%N) - $start" | bc)" "$line"
done > "$work/demo.log"
echo "first MQTT event: $(grep -m1 ' event ' "$work/demo.log" | cut -c1-7) s after 'make demo'"
echo "whole demo:       $(tail -1 "$work/demo.log" | cut -c1-7) s ($(tail -1 "$work/demo.log" | cut -c8-))"
echo "demo venv:        $(du -sh .venv | cut -f1) (editable, device side + demo extra)"
.venv/bin/python -m pip wheel -q --no-deps -w "$work/wheel" . 2>/dev/null
wheel=$(ls "$work"/wheel/facegate-*.whl)
echo "wheel:            $(du -h "$wheel" | cut -f1) $(basename "$wheel")"
python3 -m zipfile -l "$wheel" | awk 'NR>1 {print $1}' | awk -F/ '{print (NF>2 ? $1"/"$2 : $1)}' | sort | uniq -c
python3 -m venv "$work/device"
"$work/device/bin/pip" install -q --disable-pip-version-check "$wheel" 2>/dev/null
echo "device venv:      $(du -sh "$work/device" | cut -f1) (from the wheel, no extras)"
