import { describe, expect, it } from "vitest";
import { checkMap, expectNoLeaks, ioasAlloc, map, mockDomain, ok, P, READ, setup } from "./helpers.js";

// Catalogue Part B line 38, iommufd_mock_domain.ro_unshare: a MAP_PRIVATE
// (PROT_READ|PROT_WRITE) mapping of a file is mapped READABLE only; a later
// CPU write (copy-on-write) must not change the PFN the domain holds,
// because the kernel's R/O FOLL_LONGTERM pin of a page-cache page in a COW
// mapping unshares it first (gup_must_unshare) and pins the private copy.
// The selftest maps /proc/self/exe; the model's files are memfds.

describe("iommufd_mock_domain.ro_unshare (38)", () => {
  it("a CPU write after a READABLE map keeps the PFN the domain holds", () => {
    const e = setup();
    const ioas = ioasAlloc(e);
    const md = mockDomain(e, ioas);
    ok(e.p, md.rc);
    const mfd = e.p.memfdCreate("exe");
    ok(e.p, e.p.ftruncate(mfd, P));
    const shared = e.p.mmap(0n, P, 3, 0x01, mfd, 0n);
    ok(e.p, e.p.writeMemory(shared, new Uint8Array([0x7f, 0x45, 0x4c, 0x46])));
    const buf = e.p.mmap(0n, P, 3, 0x02, mfd, 0n);
    expect(buf).toBeGreaterThan(0n);
    const r = map(e, ioas, buf, P, undefined, READ);
    ok(e.p, r.rc);
    ok(e.p, checkMap(e, md.hwpt, r.iova, P, buf));
    ok(e.p, e.p.writeMemory(buf, new Uint8Array(Number(P)).fill(1)));
    ok(e.p, checkMap(e, md.hwpt, r.iova, P, buf));
    expectNoLeaks(e);
  });
});
