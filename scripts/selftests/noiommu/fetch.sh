#!/usr/bin/env bash
# Put the noiommu series' selftest file (GPL kernel test code, never committed
# here) into the cache: usage fetch.sh COMMIT DEST_SRC_DIR. Uses a copy already
# in DEST_SRC_DIR, else downloads it from the series' public tree at COMMIT.
# Exits 1 when neither works (README.md beside this file: how to place it).
set -euo pipefail
commit="$1"
dest="$2"
path=tools/testing/selftests/vfio/vfio_iommufd_noiommu_test.c
file="$dest/$path"
if [ -s "$file" ]; then
  echo "noiommu: $path @ ${commit:0:12} (cached, sha256 $(sha256sum "$file" | cut -c1-16))"
  exit 0
fi
url="https://raw.githubusercontent.com/jacobpan/linux/$commit/$path"
mkdir -p "$(dirname "$file")"
if command -v curl >/dev/null && curl -fsSL --max-time 30 -o "$file.tmp" "$url" 2>/dev/null && [ -s "$file.tmp" ]; then
  mv "$file.tmp" "$file"
  echo "noiommu: downloaded $path @ ${commit:0:12} (sha256 $(sha256sum "$file" | cut -c1-16))"
  exit 0
fi
rm -f "$file.tmp"
echo "noiommu: $url is out of reach and $file is not there: place the file there by hand (scripts/selftests/noiommu/README.md)"
exit 1
