#!/usr/bin/env bash
# Build the kernel's own selftests from Debian's linux-source packages with
# this machine's gcc, unmodified, into a cache outside the clone:
#
#   ${IOMMUFD_SIM_CACHE:-$HOME/.cache/iommufd-sim}/selftests/
#     <6.12|7.2>/bin/{iommufd,iommufd_fail_nth}     tools/testing/selftests/iommu
#     vfio-7.2/bin/vfio_*_test                      tools/testing/selftests/vfio (7 programs)
#     noiommu-ce8228af/bin/vfio_iommufd_noiommu_test  the noiommu series' selftest
#                                                   (scripts/selftests/noiommu/README.md)
#
# usage: scripts/selftests/build.sh [6.12|7.2|vfio|noiommu|all]   (default all)
# Prints "<tree> <bin dir> <version>" per tree on stdout ("<tree> - unavailable
# <reason>" when the noiommu sources cannot be had); progress goes to stderr.
#
# The system's apt configuration is never touched: packages come through a
# private sources list, lists directory and cache (apt's -o Dir::... options).
# Only the few files the build needs are taken out of the source tarball.
# A tree is rebuilt only when its recipe (this file) or package version changes.
set -euo pipefail

ROOT="${IOMMUFD_SIM_CACHE:-$HOME/.cache/iommufd-sim}/selftests"
HERE="$(cd "$(dirname "$0")" && pwd)"
RECIPE="$(cat "$HERE/build.sh" "$HERE"/noiommu/* | sha256sum | cut -c1-16)"
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

VFIO_PROGS=(vfio_dma_mapping_test vfio_dma_mapping_mmio_test vfio_iommufd_setup_test vfio_pci_device_test
  vfio_pci_device_init_perf_test vfio_pci_driver_test vfio_pci_sriov_uapi_test)
VFIO_LIB=(iommu iova_allocator libvfio sysfs vfio_pci_device vfio_pci_driver drivers/ioat/ioat drivers/dsa/dsa)

# tools/testing/selftests/vfio of 7.2 and what it includes: the IOAT and DSA
# headers its lib/drivers/*/ symlinks point into, tools/include (whose
# linux/pci_ids.h is itself a symlink into include/linux), the harness, and the
# uapi headers. The symlinks stay symlinks: their targets are extracted too.
extract_vfio() {
  local deb="$1" src="$2" top="linux-source-7.2"
  rm -rf "$src" && mkdir -p "$src"
  log "vfio: extracting the vfio selftest sources from $(basename "$deb")"
  dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/src/$top.tar.xz" | xz -dc |
    tar -x -C "$src" --strip-components=1 --wildcards \
      "$top/tools/testing/selftests/vfio/*" \
      "$top/tools/testing/selftests/kselftest*" \
      "$top/tools/include/*" \
      "$top/tools/arch/x86/include/*" \
      "$top/drivers/dma/ioat/hw.h" \
      "$top/drivers/dma/ioat/registers.h" \
      "$top/drivers/dma/idxd/registers.h" \
      "$top/include/linux/pci_ids.h" \
      "$top/include/uapi/linux/iommufd.h" \
      "$top/include/uapi/linux/vfio.h" \
      "$top/include/uapi/linux/idxd.h" \
      "$top/include/uapi/linux/pci_regs.h"
  local l
  for l in lib/drivers/ioat/hw.h lib/drivers/ioat/registers.h lib/drivers/dsa/registers.h; do
    [ -e "$src/tools/testing/selftests/vfio/$l" ] || die "vfio: the symlink $l has no target"
  done
  [ -e "$src/tools/include/linux/pci_ids.h" ] || die "vfio: tools/include/linux/pci_ids.h has no target"
}

# The flags of tools/testing/selftests/vfio/Makefile, lib/libvfio.mk and
# lib.mk (-Wall -Werror, -D_GNU_SOURCE=, the harness and tools/include paths,
# -pthread, -luuid) with KHDR_INCLUDES pointing at the installed headers.
# 7.2.13's lib calls calloc_assert(), which nothing in that tree defines.
vfio_cflags() {
  local src="$1" khdr="$2" d="$1/tools/testing/selftests/vfio"
  echo -isystem "$khdr" -D_GNU_SOURCE= -I"$src/tools/testing/selftests" -I"$d/lib/include" \
    -I"$src/tools/include" -Wall -Werror '-Dcalloc_assert(n,s)=calloc(n,s)'
}

compile_vfio() {
  local src="$1" khdr="$2" bin="$3" d="$1/tools/testing/selftests/vfio" obj="$3/obj" c p flags
  read -r -a flags <<<"$(vfio_cflags "$src" "$khdr")"
  mkdir -p "$obj"
  for c in "${VFIO_LIB[@]}"; do
    gcc "${flags[@]}" -c "$d/lib/$c.c" -o "$obj/$(basename "$c").o" 2>"$obj/build.log" ||
      { cat "$obj/build.log" >&2; die "vfio: lib/$c.c did not compile"; }
  done
  for p in "${VFIO_PROGS[@]}"; do
    log "vfio: gcc $p"
    gcc "${flags[@]}" -pthread "$d/$p.c" "$obj"/*.o -luuid -o "$bin/$p.tmp" 2>"$obj/build.log" ||
      { cat "$obj/build.log" >&2; die "vfio: $p did not compile"; }
    mv "$bin/$p.tmp" "$bin/$p"
  done
}

build_vfio() {
  local dir="$ROOT/vfio-7.2" deb stamp want p fresh=0
  [ -e /usr/include/uuid/uuid.h ] || die "missing: uuid-dev (uuid/uuid.h) (apt-get install -y uuid-dev)"
  mkdir -p "$ROOT/7.2" "$dir/bin"
  deb="$(fetch_deb 7.2 "$ROOT/7.2")"
  want="$RECIPE $(basename "$deb")"
  stamp="$dir/bin/.stamp"
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] || fresh=1
  for p in "${VFIO_PROGS[@]}"; do [ -x "$dir/bin/$p" ] || fresh=1; done
  if [ "$fresh" = 1 ]; then
    extract_vfio "$deb" "$dir/src"
    install_headers vfio "$dir/src" "$dir/khdr"
    for h in idxd pci_regs; do
      sed -E 's/\b__user\b//g; s/__counted_by(_le|_be)?\([^)]*\)//g' "$dir/src/include/uapi/linux/$h.h" >"$dir/khdr/linux/$h.h"
    done
    compile_vfio "$dir/src" "$dir/khdr" "$dir/bin"
    echo "$want" >"$stamp"
  else
    log "vfio: cached in $dir/bin"
  fi
  echo "vfio $dir/bin $(basename "$deb" .deb | cut -d_ -f2)"
}

# The noiommu series' selftest (scripts/selftests/noiommu/README.md): the
# test file from its public tree, built with 7.2's lib, the series' cdev-name
# rule applied to lib/vfio_pci_device.c, and the two lib helpers and the uapi
# addition it calls, written for this project (noiommu/libvfio-noiommu.{c,h}).
build_noiommu() {
  local commit=ce8228af03d9622fc3701785c4a881d9f2b0668d
  local dir="$ROOT/noiommu-${commit:0:8}" vdir="$ROOT/vfio-7.2" test stamp want flags d
  test="$dir/src/tools/testing/selftests/vfio/vfio_iommufd_noiommu_test.c"
  build_vfio >/dev/null
  if ! bash "$HERE/noiommu/fetch.sh" "$commit" "$dir/src" >&2; then
    echo "noiommu - unavailable (the series' test file could not be fetched: scripts/selftests/noiommu/README.md)"
    return
  fi
  want="$RECIPE $commit $(sha256sum "$test" | cut -c1-16) $(cat "$vdir/bin/.stamp")"
  stamp="$dir/bin/.stamp"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -x "$dir/bin/vfio_iommufd_noiommu_test" ]; then
    mkdir -p "$dir/bin/obj"
    d="$vdir/src/tools/testing/selftests/vfio"
    read -r -a flags <<<"$(vfio_cflags "$vdir/src" "$vdir/khdr")"
    # the series' "Handle VFIO noiommu cdev" rule: the cdev may be noiommu-vfioN
    sed 's/if (strncmp("vfio", entry->d_name, 4))/if (strncmp("vfio", entry->d_name, 4) \&\& strncmp("noiommu-vfio", entry->d_name, 12))/' \
      "$d/lib/vfio_pci_device.c" >"$dir/bin/obj/vfio_pci_device.c"
    grep -q '"noiommu-vfio"' "$dir/bin/obj/vfio_pci_device.c" || die "noiommu: the cdev-name rule did not apply to 7.2's lib"
    log "noiommu: gcc vfio_iommufd_noiommu_test"
    gcc "${flags[@]}" -I"$d/lib" -c "$dir/bin/obj/vfio_pci_device.c" -o "$dir/bin/obj/vfio_pci_device.o" &&
      gcc "${flags[@]}" -c "$HERE/noiommu/libvfio-noiommu.c" -o "$dir/bin/obj/libvfio-noiommu.o" &&
      gcc "${flags[@]}" -include "$HERE/noiommu/libvfio-noiommu.h" -pthread "$test" "$dir/bin/obj"/*.o \
        $(ls "$vdir"/bin/obj/*.o | grep -v '/vfio_pci_device\.o$') -luuid \
        -o "$dir/bin/vfio_iommufd_noiommu_test" 2>"$dir/bin/obj/build.log" ||
      { cat "$dir/bin/obj/build.log" >&2; die "noiommu: vfio_iommufd_noiommu_test did not compile"; }
    echo "$want" >"$stamp"
  else
    log "noiommu: cached in $dir/bin"
  fi
  echo "noiommu $dir/bin ${commit:0:12}"
}

need_tools
case "${1:-all}" in
  6.12 | 7.2) build_tree "$1" ;;
  vfio) build_vfio ;;
  noiommu) build_noiommu ;;
  all)
    build_tree 6.12
    build_tree 7.2
    build_vfio
    build_noiommu
    ;;
  *) die "usage: $0 [6.12|7.2|vfio|noiommu|all]" ;;
esac
