#!/usr/bin/env bash
# Build the memcpy device's DPDK driver (examples/dpdk/memcpy_pmd.c) against
# the system's DPDK (Debian bookworm: libdpdk-dev 22.11) into a cache outside
# the clone, and print the .so's path (load it with `dpdk-test -d PATH`):
#
#   ${IOMMUFD_SIM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/iommufd-sim}/dpdk/<hash>/librte_memcpy_pmd.so
#
# Rebuilt only when the sources, this recipe or the DPDK version change.
# The EAL refuses a plugin in a directory that is, or has a parent that is,
# world-writable (/tmp): so the cache directories are made 0755.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
SRC="$(cd "$HERE/../../examples/dpdk" && pwd)"
CACHE="${IOMMUFD_SIM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/iommufd-sim}"

die() { echo "dpdk: error: $*" >&2; exit 1; }

command -v "${CC:-cc}" >/dev/null || die "no C compiler (apt-get install -y gcc)"
command -v pkg-config >/dev/null || die "no pkg-config (apt-get install -y pkg-config)"
pkg-config --exists libdpdk || die "no libdpdk.pc (apt-get install -y libdpdk-dev dpdk-dev)"

VERSION="$(pkg-config --modversion libdpdk)"
HASH="$(cat "$SRC/memcpy_pmd.c" "$SRC/dpdk-pci-sdk.h" "$HERE/build.sh" | { cat; echo "$VERSION ${CC:-cc}"; } |
  sha256sum | cut -c1-16)"
OUT="$CACHE/dpdk/$HASH"
SO="$OUT/librte_memcpy_pmd.so"
if [ ! -e "$SO" ]; then
  mkdir -p -m 0755 "$CACHE/dpdk" "$OUT"
  chmod 0755 "$CACHE/dpdk" "$OUT"
  tmp="$SO.$$.tmp"
  # shellcheck disable=SC2046 # pkg-config prints several words on purpose
  "${CC:-cc}" -O2 -g -fPIC -shared -Wall -Wextra -Werror -o "$tmp" "$SRC/memcpy_pmd.c" \
    $(pkg-config --cflags --libs libdpdk)
  mv "$tmp" "$SO"
fi
echo "$SO"
