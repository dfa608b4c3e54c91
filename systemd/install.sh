#!/usr/bin/env bash
# Install facegate as a systemd service on Raspberry Pi OS (Bookworm, Python
# 3.11; Trixie, Python 3.13) or another Debian-like system.
#
#   sudo systemd/install.sh                 install or upgrade, enable, start
#   sudo systemd/install.sh --no-start      install and enable, do not start
#   systemd/install.sh --dry-run            print what it would do, change nothing
#   DESTDIR=/tmp/stage systemd/install.sh   stage the files under DESTDIR (no users,
#                                           no apt, no systemctl); what it would
#                                           chown is listed in DESTDIR/.facegate-manifest
#   sudo systemd/install.sh --uninstall     remove the service, venv and unit; keep
#                                           /etc/facegate and the gallery
#   sudo systemd/install.sh --uninstall --purge   ...and delete them too
#
# Idempotent: a second run upgrades the package and the unit, and keeps the
# config and the gallery.
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DESTDIR="${DESTDIR:-}"
PREFIX="/opt/facegate"
CONF_DIR="/etc/facegate"
STATE_DIR="/var/lib/facegate"
UNIT_DIR="/etc/systemd/system"
BIN_DIR="/usr/local/bin"
USER_NAME="facegate"
PYTHON="${PYTHON:-python3}"
DRY=0; START=1; UNINSTALL=0; PURGE=0

for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    --no-start) START=0 ;;
    --uninstall) UNINSTALL=1 ;;
    --purge) PURGE=1 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done

STAGED=0; [ -n "$DESTDIR" ] && STAGED=1
MANIFEST="$DESTDIR/.facegate-manifest"
if [ "$STAGED" = 1 ] && [ "$DRY" = 0 ]; then mkdir -p "$DESTDIR"; : > "$MANIFEST"; fi

say() { echo "facegate-install: $*"; }
run() {  # run a command, or print it in --dry-run
  if [ "$DRY" = 1 ]; then echo "  would run: $*"; else "$@"; fi
}
system() {  # a command that changes the system itself: skipped when staging
  if [ "$STAGED" = 1 ]; then echo "  staged, skipped: $*"; else run "$@"; fi
}
record() {  # path mode owner: set now when we can, always written to the manifest
  local path="$1" mode="$2" owner="$3"
  run chmod "$mode" "$DESTDIR$path"
  if [ "$STAGED" = 0 ]; then run chown "$owner" "$DESTDIR$path"; fi
  if [ "$DRY" = 0 ] && [ "$STAGED" = 1 ]; then echo "$path $mode $owner" >> "$MANIFEST"; fi
}

if [ "$STAGED" = 0 ] && [ "$DRY" = 0 ] && [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (sudo), or with --dry-run or DESTDIR=..." >&2
  exit 2
fi

if [ "$UNINSTALL" = 1 ]; then
  system systemctl disable --now facegate.service || true
  run rm -f "$DESTDIR$UNIT_DIR/facegate.service"
  system systemctl daemon-reload
  run rm -rf "$DESTDIR$PREFIX"
  if [ "$(readlink "$DESTDIR$BIN_DIR/facegate" 2>/dev/null)" = "$PREFIX/venv/bin/facegate" ]; then
    run rm -f "$DESTDIR$BIN_DIR/facegate"  # the link this installer made, nothing else
  fi
  if [ "$PURGE" = 1 ]; then
    run rm -rf "$DESTDIR$CONF_DIR" "$DESTDIR$STATE_DIR"
    system userdel "$USER_NAME" || true
    say "removed, with config and gallery"
  else
    say "removed; kept $CONF_DIR and $STATE_DIR (the gallery): --purge deletes them"
  fi
  exit 0
fi

PYVER="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
ARCH="$(uname -m)"
say "Python $PYVER on $ARCH; source $SRC"
case "$PYVER" in
  3.9|3.10|3.11|3.12|3.13) ;;
  *) echo "install.sh: Python $PYVER is not supported (3.9-3.13)" >&2; exit 2 ;;
esac
# 32-bit Arm is refused, from measurement (`scripts/pi-check bookworm-armhf`,
# docs/results/pi-check.md): PyPI's only runtime for it is tflite-runtime 2.14 (Python
# <= 3.11, numpy < 2), which dies with SIGSEGV on a damaged model file instead of raising,
# and facegate's landmark cascade failed on 32-bit numpy's index type. Trixie 32-bit
# (Python 3.13) and armv6 (Pi 1, Zero W) have no runtime at all.
case "$ARCH" in
  armv7l|armv6l|armv5*|armhf|arm)
    echo "install.sh: 32-bit Arm ($ARCH) is not supported: install Raspberry Pi OS (64-bit) on a Pi 3, 4, 5 or Zero 2 W; see docs/RASPBERRY_PI.md" >&2
    exit 2 ;;
esac

# 1. System packages: the camera stack comes from the distribution (libcamera
#    bindings are not on PyPI), so the venv sees system site-packages.
wanted=(python3-venv python3-picamera2)
missing=()
for pkg in "${wanted[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
installable=(); unknown=()
for pkg in "${missing[@]}"; do
  if apt-cache show "$pkg" >/dev/null 2>&1; then installable+=("$pkg"); else unknown+=("$pkg"); fi
done
if [ "${#installable[@]}" -gt 0 ]; then
  if [ "$STAGED" = 1 ]; then
    say "would install with apt: ${installable[*]} (staged: not installed)"
  else
    system apt-get install -y "${installable[@]}" || say "could not install ${installable[*]}: install them, then run again"
  fi
fi
for pkg in "${unknown[@]}"; do
  if [ "$pkg" = python3-picamera2 ]; then
    say "python3-picamera2 is not installed and this system's apt does not know it: it comes from Raspberry Pi OS's own repository (archive.raspberrypi.com), not Debian's. Without it camera.source picamera2 cannot work; use opencv, video or folder (docs/RASPBERRY_PI.md), or install Raspberry Pi OS."
  else
    say "$pkg is not installed and apt does not know it: install it, then run again"
  fi
done

# 2. The service user, in the video group (camera devices).
if [ "$STAGED" = 0 ] && ! id "$USER_NAME" >/dev/null 2>&1; then
  system useradd --system --home-dir "$STATE_DIR" --no-create-home --shell /usr/sbin/nologin \
    --groups video "$USER_NAME"
fi

# 3. Code: a venv that can see picamera2, with facegate and the right TFLite
#    runtime for this Python (pyproject markers pick ai-edge-litert or tflite-runtime).
run mkdir -p "$DESTDIR$PREFIX" "$DESTDIR$PREFIX/share"
record "$PREFIX" 0755 root:root
if [ "$STAGED" = 0 ]; then
  run env PYTHON="$PYTHON" "$SRC/systemd/venv.sh" "$PREFIX/venv" "$SRC[video]" --upgrade --quiet
else
  say "staged: skipping the venv (it would be $PREFIX/venv, made by systemd/venv.sh)"
fi

# The command on root's and sudo's PATH (`sudo -u facegate facegate doctor`): a link to
# the venv's, never over a file this installer did not make.
run mkdir -p "$DESTDIR$BIN_DIR"
if [ -e "$DESTDIR$BIN_DIR/facegate" ] && [ ! -L "$DESTDIR$BIN_DIR/facegate" ]; then
  say "keeping $BIN_DIR/facegate (not a link this installer made); the service's is $PREFIX/venv/bin/facegate"
else
  run ln -sfn "$PREFIX/venv/bin/facegate" "$DESTDIR$BIN_DIR/facegate"
fi

# 4. Models: inside the package (facegate.models), installed with it into the venv.
run install -m 0644 "$SRC/docs/RASPBERRY_PI.md" "$DESTDIR$PREFIX/share/RASPBERRY_PI.md"

# 5. Config (never overwritten) and state.
run mkdir -p "$DESTDIR$CONF_DIR" "$DESTDIR$STATE_DIR"
record "$CONF_DIR" 0750 "root:$USER_NAME"
if [ -e "$DESTDIR$CONF_DIR/config.yaml" ]; then
  say "keeping existing $CONF_DIR/config.yaml"
else
  run install -m 0640 "$SRC/edge/config.example.yaml" "$DESTDIR$CONF_DIR/config.yaml"
fi
record "$CONF_DIR/config.yaml" 0640 "root:$USER_NAME"
record "$STATE_DIR" 0700 "$USER_NAME:$USER_NAME"

# 6. The unit.
run mkdir -p "$DESTDIR$UNIT_DIR"
run install -m 0644 "$SRC/systemd/facegate.service" "$DESTDIR$UNIT_DIR/facegate.service"
record "$UNIT_DIR/facegate.service" 0644 root:root
system systemctl daemon-reload
system systemctl enable facegate.service
if [ "$START" = 1 ]; then
  system systemctl restart facegate.service
fi
say "done. Edit $CONF_DIR/config.yaml (broker, camera), then: sudo systemctl restart facegate; sudo -u $USER_NAME facegate doctor"
