#!/usr/bin/env bash
# Runs inside an emulated Raspberry Pi OS base (scripts/pi-check stages it under
# /opt/facegate-check and runs it with chroot), doing what a Pi owner does. Each step's
# result and seconds go to summary.txt as key=value lines; the exit status is 1 if any failed.
set -uo pipefail
CHECK=/opt/facegate-check
V=$CHECK/venv
SUMMARY=$CHECK/summary.txt
: > "$SUMMARY"
FAILED=()
note() { echo "$1=$2" >> "$SUMMARY"; }
step() { echo; echo "== ${PI_TARGET:-root}: $*"; T0=$(date +%s); }
took() { note "$1_s" $(( $(date +%s) - T0 )); }
fail() { FAILED+=("$1"); note "$1" FAIL; }

note machine "$(uname -m)"
note python "$(python3 -c 'import platform; print(platform.python_version())')"
note os "$(. /etc/os-release; echo "$PRETTY_NAME")"

step "a venv that sees the system's packages, and the wheel with the device extras only"
# As systemd/install.sh makes it. --only-binary: a Pi owner has no compiler to fall back
# on, and a build here would hide a missing wheel.
if "$CHECK/src/systemd/venv.sh" "$V" "$CHECK"/wheel/facegate-*.whl --only-binary=:all: --progress-bar off; then
  note install ok
else
  fail install
  exit 1
fi
took install
"$V/bin/python" - <<'EOF' | tee -a "$SUMMARY"
import importlib, importlib.metadata as md, sys
from facegate.interpreter import interpreter_class
name, _ = interpreter_class()
for dist, module in (("numpy", "numpy"), ("pillow", "PIL"), ("pyyaml", "yaml"), ("paho-mqtt", "paho.mqtt"), (name, None)):
    where = "venv" if module is None or sys.prefix in importlib.import_module(module).__file__ else "system"
    print(f"package_{dist}={md.version(dist)} ({where})")
EOF
PHOTOS=$("$V/bin/python" -c 'from facegate.demo import PHOTOS; print(PHOTOS)')

step "facegate demo (its broker: the system's mosquitto)"
mkdir -p /tmp/pi-demo && cd /tmp/pi-demo || exit 1
if "$V/bin/facegate" demo 2>&1 | tee "$CHECK/demo.log"; then note demo ok; else fail demo; fi
note demo_result "$(grep -E 'decisions right$|^live: [0-9]+ events' "$CHECK/demo.log" | tr '\n' ';' | sed 's/;$//; s/;/; /')"
took demo

step "facegate enroll and doctor against a running mosquitto"
rm -rf /tmp/pi-doctor && mkdir -p /tmp/pi-doctor
PORT=$("$V/bin/python" -c 'from facegate.demo.broker import free_port; print(free_port())')
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$PORT" > /tmp/pi-doctor/mosquitto.conf
mosquitto -c /tmp/pi-doctor/mosquitto.conf > /tmp/pi-doctor/mosquitto.log 2>&1 &
MOSQ=$!
cat > /tmp/pi-doctor/config.yaml <<EOF
device: {id: pi-check, name: Pi check}
camera: {source: folder, path: $PHOTOS}
gallery: {path: /tmp/pi-doctor/gallery.db}
mqtt: {host: 127.0.0.1, port: $PORT}
EOF
"$V/bin/facegate" --gallery /tmp/pi-doctor/gallery.db enroll obama "$PHOTOS/obama.jpg" || fail enroll
if "$V/bin/facegate" doctor --config /tmp/pi-doctor/config.yaml 2>&1 | tee "$CHECK/doctor.log"; then
  note doctor ok
else
  fail doctor
fi
note doctor_result "$(grep -cE '^ *OK|\bOK\b' "$CHECK/doctor.log") OK, $(grep -cE '\bWARN\b' "$CHECK/doctor.log") WARN, $(grep -cE '\bFAIL\b' "$CHECK/doctor.log") FAIL"
kill "$MOSQ" 2>/dev/null
took doctor

step "systemd/install.sh staged with DESTDIR (no systemd in the root)"
rm -rf /tmp/pi-stage
if DESTDIR=/tmp/pi-stage PYTHON=python3 bash "$CHECK/src/systemd/install.sh" 2>&1 | tee "$CHECK/install.log"; then
  note installer ok
else
  fail installer
fi
echo "staged files (path mode owner):"; sed 's/^/  /' /tmp/pi-stage/.facegate-manifest
for f in etc/systemd/system/facegate.service etc/facegate/config.yaml .facegate-manifest; do
  [ -f "/tmp/pi-stage/$f" ] || { echo "installer: /tmp/pi-stage/$f is missing"; fail "installer_$f"; }
done
note installer_picamera2 "$(grep -m1 -i 'picamera2 is not' "$CHECK/install.log" | sed 's/^facegate-install: //; s/ Without it.*//')"
took installer

step "the -m pi tests"
"$V/bin/pip" install -q --disable-pip-version-check --only-binary=:all: 'pytest>=8'
cd "$CHECK/src" || exit 1
# Only the files that hold `pi` tests: the others import what a device install lacks.
mapfile -t FILES < <(grep -l '@pytest.mark.pi$' tests/test_*.py)
"$V/bin/python" -m pytest -m pi -p no:cacheprovider -q "${FILES[@]}" 2>&1 | tee "$CHECK/tests.log"
[ "${PIPESTATUS[0]}" = 0 ] || fail tests
note tests_result "$(grep -E '[0-9]+ (passed|failed|error)' "$CHECK/tests.log" | tail -1 | tr -d '=' | sed 's/^ *//; s/ *$//')$(grep -q 'Segmentation fault' "$CHECK/tests.log" && echo ' (pytest died: Segmentation fault)')"
took tests

step "parity: the same images through the pipeline"
IMAGES=("$PHOTOS")
[ -d "$CHECK/images/five_celebrity" ] && IMAGES+=("$CHECK/images/five_celebrity")
"$V/bin/facegate" bench parity collect "${IMAGES[@]}" --out "$CHECK/parity.npz" 2>"$CHECK/parity.log" || fail parity
took parity

step "facegate bench summary (runs here; its emulated times are no Pi's)"
"$V/bin/facegate" bench summary --rounds 1 --runs 3 2>/dev/null | tee "$CHECK/bench.log"
if [ "${PIPESTATUS[0]}" = 0 ]; then note bench_summary ok; else fail bench_summary; fi
took bench_summary

note failed "${FAILED[*]:-none}"
echo; cat "$SUMMARY"
[ ${#FAILED[@]} = 0 ]
