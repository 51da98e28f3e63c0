#!/usr/bin/env bash
# Install the Debian packages promptcast's build and tests need, only if missing.
#   setup-system.sh         everything the test suite uses
#   setup-system.sh build   only what building the Python packages needs
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }

have cc || need+=(build-essential)
have cmake || need+=(cmake)
# The C module promptcast._scan builds against the headers of the Python that
# installs it (PYTHON, the virtualenv's, from the Makefile). Without them the
# build is skipped and the relay runs its slower Python scans.
include=$("${PYTHON:-python3}" -c 'import sysconfig; print(sysconfig.get_paths()["include"])' \
          2>/dev/null || true)
[ -n "$include" ] && [ -f "$include/Python.h" ] || need+=(python3-dev)
if [ "${1:-}" != "build" ]; then
    have node || need+=(nodejs)
    [ -x /usr/bin/chromium ] || need+=(chromium)
    have redis-server || need+=(redis-server)
    [ -x /usr/sbin/nginx ] || have nginx || need+=(nginx)
    dpkg -s fonts-noto-cjk >/dev/null 2>&1 || need+=(fonts-noto-cjk)
    # The library's tests start a throwaway PostgreSQL cluster (initdb, pg_ctl).
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || have initdb || need+=(postgresql)
fi

[ ${#need[@]} -eq 0 ] && exit 0

echo "installing Debian packages: ${need[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if have sudo; then sudo="sudo"; else
        echo "promptcast: please install these packages as root: ${need[*]}" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The packaged services are started by the tests on their own ports, not by the system.
for service in redis-server nginx postgresql; do
    if have systemctl && systemctl is-active --quiet "$service" 2>/dev/null; then
        $sudo systemctl stop "$service" || true
    fi
done
