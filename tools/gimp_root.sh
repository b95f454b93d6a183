#!/bin/sh
# Builds (once) or reuses a Debian 13 (trixie) root with GIMP 3 and its Python
# bindings, for `make test-gimp`. Debian 12 ships GIMP 2.10 only; trixie has 3.0.
# Needs root (debootstrap, chroot). About 1-2 minutes and ~350 MB the first time.
#
#   tools/gimp_root.sh            print the root's path, building it if missing
#   CYCLEGAND_GIMP_ROOT=DIR       where the root lives (default below)
set -eu

ROOT=${CYCLEGAND_GIMP_ROOT:-/var/cache/cyclegand/gimp-root}
MIRROR=${CYCLEGAND_DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [ -f "$ROOT/.cyclegand-ready" ]; then
    echo "$ROOT"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "gimp_root.sh: building the GIMP root needs root (debootstrap, chroot)" >&2
    exit 77
fi

# Never run two apt-get/dpkg at once: the image drops cached .debs after each run.
wait_for_apt() {
    while pgrep -x apt-get >/dev/null || pgrep -x dpkg >/dev/null; do sleep 2; done
}

if ! command -v debootstrap >/dev/null; then
    wait_for_apt
    apt-get install -y debootstrap >&2
fi

# A half-built root from an interrupted run is not trusted: start over.
rm -rf "$ROOT"
mkdir -p "$(dirname "$ROOT")"
echo "gimp_root.sh: debootstrap trixie into $ROOT (once; reused afterwards)" >&2
debootstrap --variant=minbase trixie "$ROOT" "$MIRROR" >&2
chroot "$ROOT" env -i HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
    PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    apt-get install -y --no-install-recommends gimp gir1.2-gimp-3.0 python3-gi >&2
chroot "$ROOT" apt-get clean >&2
touch "$ROOT/.cyclegand-ready"
echo "$ROOT"
