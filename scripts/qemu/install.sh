#!/usr/bin/env bash
# Install the two QEMUs `iommufd-sim qemu` drives (docs/qemu.md), idempotent and quiet:
#  - QEMU 7.2, Debian bookworm's qemu-system-x86 (apt-get: the legacy VFIO container);
#  - QEMU 10.0 from bookworm-backports (iommufd backend), unpacked with
#    `apt-get download` + `dpkg-deb -x` into $CACHE/qemu10 next to 7.2, so the
#    system keeps its own QEMU and no apt source is added to the system.
# 7.2's packages bring the runtime libraries QEMU 10 links against (libpmem1,
# libbpf1, libfuse3-3, libvdeplug2, ...); the ones missing are installed too.
# Prints nothing when everything is there; exits non-zero when it cannot install.
set -euo pipefail
CACHE=${IOMMUFD_SIM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/iommufd-sim}
QEMU10=$CACHE/qemu10
SUDO=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo -n"
export DEBIAN_FRONTEND=noninteractive

apt_install() {
  $SUDO apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "$@" >/dev/null 2>&1 ||
    { $SUDO apt-get update -qq >/dev/null 2>&1 &&
      $SUDO apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "$@" >/dev/null; }
}

if ! command -v qemu-system-x86_64 >/dev/null; then
  apt_install qemu-system-x86
fi

if [ ! -x "$QEMU10/usr/bin/qemu-system-x86_64" ]; then
  # A private apt state in the cache: bookworm-backports from the same mirror
  # as the system's bookworm source.
  apt=$CACHE/apt-backports
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$CACHE/debs"
  bookworm_uri() { apt-get indextargets --format '$(REPO_URI) $(CODENAME)' | awk '$2 == "bookworm" { print $1; exit }'; }
  uri=$(bookworm_uri)
  # the codename comes from the downloaded Release files: none yet on a fresh machine
  if [ -z "$uri" ]; then
    $SUDO apt-get update -qq >/dev/null 2>&1 || true
    uri=$(bookworm_uri)
  fi
  if [ -z "$uri" ]; then
    echo "scripts/qemu/install.sh: no bookworm apt source on this machine (QEMU 10 comes from bookworm-backports)" >&2
    exit 1
  fi
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri bookworm-backports main" >"$apt/sources.list"
  opts=(-o APT::Sandbox::User=root -o Dir::Etc::SourceList="$apt/sources.list"
    -o Dir::Etc::SourceParts=/nonexistent -o Dir::State::Lists="$apt/lists" -o Dir::Cache="$apt/cache")
  apt-get "${opts[@]}" update -qq >/dev/null
  pkgs=(qemu-system-x86 qemu-system-common qemu-system-data seabios)
  (cd "$CACHE/debs" && apt-get "${opts[@]}" download -qq "${pkgs[@]/%//bookworm-backports}" >/dev/null)
  tmp=$(mktemp -d "$CACHE/qemu10.XXXXXX")
  for p in "${pkgs[@]}"; do
    for deb in "$CACHE/debs/${p}_"*bpo12*.deb; do dpkg-deb -x "$deb" "$tmp"; done
  done
  rm -rf "$QEMU10"
  mv "$tmp" "$QEMU10"
fi

# Runtime libraries QEMU 10 needs that the system lacks (normally none: 7.2 brought them).
missing=$(LD_LIBRARY_PATH="$QEMU10/usr/lib/x86_64-linux-gnu" ldd "$QEMU10/usr/bin/qemu-system-x86_64" |
  awk '/not found/ { print $1 }')
if [ -n "$missing" ]; then
  libs=()
  for so in $missing; do
    case $so in
      libpmem.so.1) libs+=(libpmem1) ;;
      libbpf.so.1) libs+=(libbpf1) ;;
      libfuse3.so.3) libs+=(libfuse3-3) ;;
      libvdeplug.so.2) libs+=(libvdeplug2) ;;
      *) echo "scripts/qemu/install.sh: QEMU 10 needs $so, which no package here is known to give" >&2; exit 1 ;;
    esac
  done
  apt_install "${libs[@]}"
fi
