// The 7.2 selftests' iommufd_ioas.dmabuf_simple and dmabuf_revoke (IOMMU_TEST_OP_DMABUF_GET /
// DMABUF_REVOKE, IOAS_MAP_FILE of a dma-buf) × no_domain / mock_domain / two_mock_domain.
import { describe, expect, it } from "vitest";
import type { DmaBuf } from "../../src/iommufd/dmabuf.js";
import { getHwptPaging, type HwptPaging } from "../../src/iommufd/hw-pagetable.js";
import { iommufdCtxFromFile } from "../../src/iommufd/index.js";
import { EBADF, EINVAL, ENODEV } from "../../src/uapi/errno.js";
import {
  call,
  type Env,
  expectErrno,
  expectNoLeaks,
  ioasAlloc,
  MOCK_APERTURE_START,
  mockDomain,
  ok,
  P,
  RW,
  setup,
  state,
  testCmd,
  U,
  unmap,
} from "./helpers.js";

const DMABUF_GET = 22;
const DMABUF_REVOKE = 23;
const LEN = 4n * P;

function getDmabuf(e: Env, len: bigint): number {
  return Number(testCmd(e, DMABUF_GET, 0, [[16, 4, len]]).rc);
}
const revoke = (e: Env, dfd: number, on: boolean) =>
  testCmd(e, DMABUF_REVOKE, 0, [
    [16, 4, dfd],
    [20, 4, on ? 1 : 0],
  ]).rc;

function mapFile(e: Env, ioas: number, dfd: number, start: bigint, length: bigint, iova?: bigint) {
  const r = call(e.p, e.fd, U.IOMMU_IOAS_MAP_FILE, U.iommu_ioas_map_file, {
    flags: RW | (iova === undefined ? 0 : 1),
    ioas_id: ioas,
    fd: dfd,
    start,
    length,
    iova: iova ?? 0n,
  });
  return { rc: r.rc, iova: r.out.iova as bigint };
}

for (const domains of [0, 1, 2]) {
  describe(`dma-buf × ${["no_domain", "mock_domain", "two_mock_domain"][domains]}`, () => {
    function fixture() {
      const e = setup();
      const ioas = ioasAlloc(e);
      const hwpts: number[] = [];
      for (let i = 0; i < domains; i++) {
        const r = mockDomain(e, ioas);
        ok(e.p, r.rc);
        hwpts.push(r.hwpt);
      }
      const ictx = iommufdCtxFromFile(e.p.task.fdget(e.fd));
      const dom = (id: number) => (getHwptPaging(ictx, id) as HwptPaging).domain!;
      return { e, ioas, hwpts, dom };
    }

    it("dmabuf_simple: range checks EINVAL, then the domains map the dma-buf's own pages", () => {
      const { e, ioas, hwpts, dom } = fixture();
      const dfd = getDmabuf(e, LEN);
      expect(dfd).toBeGreaterThan(e.fd);
      const buf = e.p.task.fds[dfd]!.priv as DmaBuf;
      const before = state(e);
      expectErrno(e.p, mapFile(e, ioas, dfd, 0n, 0n).rc, EINVAL);
      expectErrno(e.p, mapFile(e, ioas, dfd, LEN, LEN).rc, EINVAL);
      expectErrno(e.p, mapFile(e, ioas, dfd, 0n, LEN + 1n).rc, EINVAL);
      expect(state(e)).toEqual(before);
      const m = mapFile(e, ioas, dfd, 0n, LEN);
      ok(e.p, m.rc);
      if (domains > 0) expect(m.iova).toBeGreaterThanOrEqual(MOCK_APERTURE_START);
      for (const h of hwpts) {
        for (let i = 0n; i < 4n; i++)
          expect(dom(h).iovaToPhys(m.iova + i * P)).toBe(BigInt(buf.pfns[Number(i)]) * P);
      }
      ok(e.p, e.p.close(dfd));
      // the mapping keeps the dma-buf (and its pages) until it goes
      expect(buf.pfns.length).toBe(4);
      ok(e.p, unmap(e, ioas, m.iova, LEN).rc);
      expect(buf.pfns.length).toBe(0);
      e.p.exit();
      expectNoLeaks(e);
    });

    it("dmabuf_revoke: revoke unmaps the domains, new HWPTs skip it, new maps ENODEV until restored", () => {
      const { e, ioas, hwpts, dom } = fixture();
      const dfd = getDmabuf(e, LEN);
      const m = mapFile(e, ioas, dfd, 0n, LEN);
      ok(e.p, m.rc);
      ok(e.p, revoke(e, dfd, true));
      for (const h of hwpts) expect(dom(h).iovaToPhys(m.iova)).toBe(0n);
      let extra: number | undefined;
      if (domains > 0) {
        const r = mockDomain(e, ioas);
        ok(e.p, r.rc);
        extra = r.hwpt;
        expect(dom(extra).iovaToPhys(m.iova)).toBe(0n);
      }
      const before = state(e);
      expectErrno(e.p, mapFile(e, ioas, dfd, 0n, LEN).rc, ENODEV);
      expect(state(e)).toEqual(before);
      ok(e.p, revoke(e, dfd, false));
      const m2 = mapFile(e, ioas, dfd, 0n, LEN);
      ok(e.p, m2.rc);
      const buf = e.p.task.fds[dfd]!.priv as DmaBuf;
      for (const h of [...hwpts, ...(extra === undefined ? [] : [extra])])
        expect(dom(h).iovaToPhys(m2.iova)).toBe(BigInt(buf.pfns[0]) * P);
      // the old (revoked) area still holds its IOVA until unmapped
      ok(e.p, unmap(e, ioas, m.iova, LEN).rc);
      ok(e.p, mapFile(e, ioas, dfd, 0n, LEN, m.iova).rc);
      // revoking something that is not a dma-buf
      expectErrno(e.p, revoke(e, e.fd, true), EINVAL);
      expectErrno(e.p, revoke(e, 999, true), EBADF);
      ok(e.p, e.p.close(dfd));
      e.p.exit();
      expectNoLeaks(e);
    });
  });
}

it("DMABUF_GET: 0 or more than 512 pages EINVAL", () => {
  const e = setup();
  const before = state(e);
  expectErrno(e.p, getDmabuf(e, 0n), EINVAL);
  expectErrno(e.p, getDmabuf(e, 513n * P), EINVAL);
  expect(state(e)).toEqual(before);
  e.p.exit();
  expectNoLeaks(e);
});
