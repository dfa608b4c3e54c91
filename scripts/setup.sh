#!/usr/bin/env bash
# Set up a checkout on a fresh machine. Idempotent.
#   scripts/setup.sh demo   the device install: the package and the `demo` extra (no TensorFlow)
#   scripts/setup.sh test   also the `dev` and `convert` extras, and (as root, with apt) the
#                           system packages the tests use: mosquitto, systemd-analyze, openssl,
#                           chromium and chromium-driver (the review page's browser tests)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
WHAT=${1:-test}
case "$WHAT" in
  demo) extras="demo" ;;
  test) extras="demo,dev,convert" ;;
  *) echo "usage: $0 demo|test" >&2; exit 2 ;;
esac

if [ "$WHAT" = test ]; then
  need_apt=()
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
  command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)  # the unit's verify/security tests
  command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)  # TLS test certificates
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)  # the review page, in a real browser
  command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
  if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "setup: installing ${need_apt[*]} with apt-get" >&2
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    else
      echo "setup: please install ${need_apt[*]} (tests that need it will be skipped)" >&2
    fi
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# Re-install when pyproject.toml changed, or when more extras are wanted than were installed.
stamp="$VENV/.facegate-installed-$WHAT"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing facegate[$extras] into $VENV" >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[$extras]"
  touch "$stamp"
fi
