#!/usr/bin/env bash
# Build the kernel's own iommufd selftests (tools/testing/selftests/iommu:
# `iommufd` and `iommufd_fail_nth`) from Debian's linux-source packages with
# this machine's gcc, unmodified, into a cache outside the clone:
#
#   ${IOMMUFD_SIM_CACHE:-$HOME/.cache/iommufd-sim}/selftests/<tree>/bin/{iommufd,iommufd_fail_nth}
#
# usage: scripts/selftests/build.sh [6.12|7.2|all]   (default all)
# Prints "<tree> <bin dir> <package version>" per tree on stdout; progress goes to stderr.
#
# The system's apt configuration is never touched: packages come through a
# private sources list, lists directory and cache (apt's -o Dir::... options).
# Only the few files the build needs are taken out of the source tarball.
# A tree is rebuilt only when its recipe (this file) or package version changes.
set -euo pipefail

ROOT="${IOMMUFD_SIM_CACHE:-$HOME/.cache/iommufd-sim}/selftests"
HERE="$(cd "$(dirname "$0")" && pwd)"
RECIPE="$(sha256sum "$HERE/build.sh" | cut -c1-16)"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

log() { echo "selftests: $*" >&2; }
die() { echo "selftests: error: $*" >&2; exit 1; }

# tree -> package, pinned version (the counts in the docs come from these), apt sources
pkg_of() { echo "linux-source-$1"; }
version_of() {
  case "$1" in
    6.12) echo "6.12.118-1~deb12u1" ;;
    7.2) echo "7.2.13-1" ;;
  esac
}
sources_of() {
  case "$1" in
    6.12)
      echo "deb [signed-by=$KEYRING] http://deb.debian.org/debian bookworm main"
      echo "deb [signed-by=$KEYRING] http://deb.debian.org/debian-security bookworm-security main"
      ;;
    7.2) echo "deb [signed-by=$KEYRING] http://deb.debian.org/debian sid main" ;;
  esac
}

need_tools() {
  local missing=()
  for t in gcc xz tar dpkg-deb apt-get sha256sum; do
    command -v "$t" >/dev/null || missing+=("$t")
  done
  [ -e /usr/include/sys/capability.h ] || missing+=("libcap-dev (sys/capability.h)")
  [ -e "$KEYRING" ] || missing+=("debian-archive-keyring")
  [ ${#missing[@]} -eq 0 ] || die "missing: ${missing[*]} (apt-get install -y gcc libcap-dev xz-utils debian-archive-keyring)"
}

# Download the .deb through a private apt state directory; echo its path.
fetch_deb() {
  local tree="$1" dir="$2" pkg ver apt opts deb
  pkg="$(pkg_of "$tree")"
  ver="$(version_of "$tree")"
  apt="$dir/apt"
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$dir/deb"
  sources_of "$tree" >"$apt/sources.list"
  opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o "APT::Sandbox::User=root"
    -o "Debug::NoLocking=1")
  deb="$(ls "$dir"/deb/"${pkg}_"*.deb 2>/dev/null | head -1 || true)"
  if [ -n "$deb" ]; then echo "$deb"; return; fi
  log "$tree: apt-get update (private lists in $apt)"
  apt-get "${opts[@]}" -qq update >&2 || die "apt-get update failed for $tree"
  local want="$pkg=$ver"
  if ! apt-cache "${opts[@]}" show "$want" >/dev/null 2>&1; then
    log "$tree: $ver is gone from the archive; taking the current $pkg (the case counts may differ)"
    want="$pkg"
  fi
  log "$tree: downloading $want"
  (cd "$dir/deb" && apt-get "${opts[@]}" -qq download "$want" >&2) || die "apt-get download $want failed"
  ls "$dir"/deb/"${pkg}_"*.deb | head -1
}

# Take only what the two programs need out of the tarball inside the .deb.
extract() {
  local tree="$1" deb="$2" src="$3" top="linux-source-$1"
  rm -rf "$src" && mkdir -p "$src"
  log "$tree: extracting the selftest sources from $(basename "$deb")"
  dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/src/$top.tar.xz" | xz -dc |
    tar -x -C "$src" --strip-components=1 --wildcards \
      "$top/tools/testing/selftests/iommu/*" \
      "$top/tools/testing/selftests/kselftest*" \
      "$top/include/uapi/linux/iommufd.h" \
      "$top/include/uapi/linux/vfio.h" \
      "$top/drivers/iommu/iommufd/iommufd_test.h"
}

# The uapi headers as `make headers_install` would install them (no __user,
# no __counted_by), plus, for Debian's 6.12, the six names its (newer,
# backported) selftest source uses but its own headers do not have yet.
install_headers() {
  local tree="$1" src="$2" khdr="$3"
  rm -rf "$khdr" && mkdir -p "$khdr/linux"
  for h in iommufd vfio; do
    sed -E 's/\b__user\b//g; s/__counted_by(_le|_be)?\([^)]*\)//g' "$src/include/uapi/linux/$h.h" >"$khdr/linux/$h.h"
  done
  if [ "$tree" = 6.12 ]; then
    local h="$khdr/linux/iommufd.h" t="$src/drivers/iommu/iommufd/iommufd_test.h"
    grep -q in_data_type "$h" || {
      sed -i -E 's/^(\s*)__u32 out_data_type;/\1union {\n\1\t__u32 in_data_type;\n\1\t__u32 out_data_type;\n\1};/' "$h"
      grep -q in_data_type "$h" || die "6.12: could not add in_data_type to struct iommu_hw_info"
      printf '%s\n' '#ifndef IOMMU_HW_INFO_TYPE_DEFAULT' '#define IOMMU_HW_INFO_TYPE_DEFAULT 0' '#endif' \
        '#ifndef IOMMU_HW_INFO_FLAG_INPUT_TYPE' '#define IOMMU_HW_INFO_FLAG_INPUT_TYPE (1 << 0)' '#endif' >>"$h"
    }
    grep -q MOCK_FLAGS_DEVICE_PASID "$t" || {
      printf '%s\n' '#ifndef MOCK_FLAGS_DEVICE_PASID' '#define MOCK_FLAGS_DEVICE_PASID (1 << 2)' '#endif' \
        '#ifndef MOCK_PASID_WIDTH' '#define MOCK_PASID_WIDTH 20' '#endif' >>"$t"
    }
  fi
}

compile() {
  local tree="$1" src="$2" khdr="$3" bin="$4" dir libs=()
  dir="$src/tools/testing/selftests/iommu"
  mkdir -p "$bin"
  grep -q -- '-lcap' "$dir/Makefile" && libs+=(-lcap)
  for prog in iommufd iommufd_fail_nth; do
    log "$tree: gcc $prog"
    # the flags of the selftest Makefile (and lib.mk's -D_GNU_SOURCE), with
    # KHDR_INCLUDES pointing at the installed headers above
    gcc -Wall -O2 -Wno-unused-function -D_GNU_SOURCE= -isystem "$khdr" \
      -I "$src/tools/testing/selftests" -I "$dir" \
      "$dir/$prog.c" -o "$bin/$prog.tmp" "${libs[@]}" 2>"$bin/$prog.log" ||
      { cat "$bin/$prog.log" >&2; die "$tree: $prog did not compile"; }
    mv "$bin/$prog.tmp" "$bin/$prog"
  done
}

build_tree() {
  local tree="$1" dir deb stamp want
  dir="$ROOT/$tree"
  mkdir -p "$dir"
  stamp="$dir/bin/.stamp"
  deb="$(fetch_deb "$tree" "$dir")"
  want="$RECIPE $(basename "$deb")"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -x "$dir/bin/iommufd" ] ||
    [ ! -x "$dir/bin/iommufd_fail_nth" ]; then
    extract "$tree" "$deb" "$dir/src"
    install_headers "$tree" "$dir/src" "$dir/khdr"
    compile "$tree" "$dir/src" "$dir/khdr" "$dir/bin"
    echo "$want" >"$stamp"
  else
    log "$tree: cached in $dir/bin"
  fi
  local ver
  ver="$(basename "$deb" .deb | cut -d_ -f2)"
  echo "$tree $dir/bin $ver"
}

need_tools
case "${1:-all}" in
  6.12 | 7.2) build_tree "$1" ;;
  all)
    build_tree 6.12
    build_tree 7.2
    ;;
  *) die "usage: $0 [6.12|7.2|all]" ;;
esac
