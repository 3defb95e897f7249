import { expect, it } from "vitest";
import { C_PRELUDE, compileC, execBin, kv } from "./helpers.js";

// vfio_dma_mapping_test's use of the Intel debugfs: access() on the directory, then fopen +
// fgets over domain_translation_struct, on a real program through the bridge.
it("an --iommu intel machine shows /sys/kernel/debug/iommu/intel/<bdf>/domain_translation_struct to programs", async () => {
  const bin = compileC(`${C_PRELUDE}
int main(void) {
  OUT("dir", "%d", access("/sys/kernel/debug/iommu/intel", F_OK));
  FILE *f = fopen("/sys/kernel/debug/iommu/intel/0000:00:04.0/domain_translation_struct", "r");
  OUT("open", "%d", f != NULL);
  char line[512];
  int n = 0;
  while (f && fgets(line, sizeof line, f)) {
    if (n == 0) OUT("head", "%.24s", line);
    n++;
  }
  if (f) fclose(f);
  OUT("lines", "%d", n);
  OUT("absent", "%d", access("/sys/kernel/debug/iommu/intel/0000:00:05.0", F_OK));
  return 0;
}
`);
  const intel = kv((await execBin(bin, ["--iommu", "intel"])).stdout);
  expect(intel.dir).toBe("0");
  expect(intel.open).toBe("1");
  // the default DMA domain: the device line and the column header, no leaf
  expect(intel.head).toBe("Device 0000:00:04.0 with");
  expect(intel.lines).toBe("2");
  expect(intel.absent).toBe("-1");
  const amd = kv((await execBin(bin, ["--iommu", "amd"])).stdout);
  expect(amd.dir).toBe("-1");
  expect(amd.open).toBe("0");
});
