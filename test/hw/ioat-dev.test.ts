// The IOAT channel at the register level: a machine with no IOMMU, the
// device's BAR0 reached by mmioRead/mmioWrite at the widths drivers use,
// descriptors and data placed in RAM by physical address.
import { describe, expect, it } from "vitest";
import { IoatDevice } from "../../src/hw/ioat-dev.js";
import { Machine } from "../../src/kernel/machine.js";

const BDF = "0000:00:05.0";
const CH = 0x80;
const CHANCTRL = CH + 0x00;
const CHANCMD = CH + 0x04;
const DMACOUNT = CH + 0x06;
const CHANSTS = CH + 0x08;
const CHAINADDR = CH + 0x10;
const CHANCMP = CH + 0x18;
const CDAR = CH + 0x20;
const CHANERR = CH + 0x28;
const DESC = 0x10_0000;
const SRC = 0x20_0000;
const DST = 0x30_0000;

function rig() {
  const m = new Machine({ iommu: "none", pci: [{ bdf: BDF, kind: "ioat" }] });
  const dev = m.pci.get(BDF) as IoatDevice;
  expect(dev).toBeInstanceOf(IoatDevice);
  dev.configWrite(0x04, 2, 0x0406);
  const rd = (off: number, n: number) => {
    let v = 0n;
    const b = dev.mmioRead(0, off, n);
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    return v;
  };
  const wr = (off: number, n: number, v: bigint | number) => {
    const b = new Uint8Array(n);
    let x = BigInt(v);
    for (let i = 0; i < n; i++, x >>= 8n) b[i] = Number(x & 0xffn);
    dev.mmioWrite(0, off, b);
  };
  const desc = (at: number, d: { size: number; ctl?: number; src: number; dst: number; next: number }) => {
    const b = new Uint8Array(64);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, d.size, true);
    dv.setUint32(4, d.ctl ?? 0, true);
    dv.setBigUint64(8, BigInt(d.src), true);
    dv.setBigUint64(16, BigInt(d.dst), true);
    dv.setBigUint64(24, BigInt(d.next), true);
    m.phys.write(at, b);
  };
  m.phys.write(
    SRC,
    new Uint8Array(8192).map((_, i) => (i * 5 + 1) & 0xff),
  );
  const kick = (chain: number, count: number, ctrl = 0x0009) => {
    wr(CHAINADDR, 8, chain);
    wr(CHANCTRL, 2, ctrl);
    wr(DMACOUNT, 2, count);
  };
  return { m, dev, rd, wr, desc, kick };
}

describe("IOAT registers", () => {
  it("power-on: CHANCNT 1, XFERCAP 12, CBVER 0x33, HALTED; the identity in config space", () => {
    const { dev, rd } = rig();
    expect([rd(0x00, 1), rd(0x01, 1), rd(0x08, 1)]).toEqual([1n, 12n, 0x33n]);
    expect(rd(CHANSTS, 8)).toBe(3n);
    expect(dev.configRead(0x00, 4)).toBe(0x20218086);
    expect(dev.configRead(0x08, 4) >>> 8).toBe(0x088000);
    expect(dev.barSize(0)).toBe(16384);
    expect(dev.msixCapable()).toBe(1);
    expect(dev.msiCapable()).toBe(1);
    // No extended capabilities: the dword at 0x100 is 0, so vfio-pci passes 0x100-0xfff through raw.
    expect(dev.configRead(0x100, 4)).toBe(0);
  });

  it("read-only registers ignore writes; INTRCTRL keeps bits 0 and 3; CHANCMD always reads 0", () => {
    const { rd, wr } = rig();
    wr(0x00, 4, 0xffffffff);
    wr(0x08, 1, 0x99);
    expect([rd(0x00, 1), rd(0x01, 1), rd(0x03, 1), rd(0x08, 1)]).toEqual([1n, 12n, 0x09n, 0x33n]);
    wr(CHANSTS, 8, 0n);
    expect(rd(CHANSTS, 8)).toBe(3n);
    wr(CHANCMD, 1, 0x04);
    expect(rd(CHANCMD, 1)).toBe(0n);
  });

  it("a copy, then CHANSTS holds the descriptor address with DONE; CDAR the descriptor; SUSPEND and RESUME", () => {
    const { m, rd, wr, desc, kick } = rig();
    desc(DESC, { size: 4096, src: SRC, dst: DST, next: DESC });
    kick(DESC, 1);
    expect(rd(CHANSTS, 8)).toBe(BigInt(DESC) | 1n);
    expect(rd(CDAR, 8)).toBe(BigInt(DESC));
    expect(m.phys.read(DST, 4096)).toEqual(m.phys.read(SRC, 4096));
    wr(CHANCMD, 1, 0x04);
    expect(rd(CHANSTS, 8)).toBe(BigInt(DESC) | 2n);
    wr(CHANCMD, 1, 0x10);
    expect(rd(CHANSTS, 8)).toBe(BigInt(DESC) | 1n);
  });

  it("DMACOUNT counts from the last CHAINADDR write: raising it runs only the new descriptors", () => {
    const { dev, desc, wr, kick } = rig();
    desc(DESC, { size: 64, src: SRC, dst: DST, next: DESC });
    kick(DESC, 3);
    expect(dev.completed).toBe(3);
    wr(DMACOUNT, 2, 5);
    expect(dev.completed).toBe(5);
    expect(dev.processedCount()).toBe(5);
    wr(DMACOUNT, 2, 5); // nothing new
    expect(dev.completed).toBe(5);
    kick(DESC, 2); // a new chain counts from 0 again
    expect(dev.completed).toBe(7);
    expect(dev.processedCount()).toBe(2);
  });

  it("the 16-bit count wraps: from 65535 processed, a DMACOUNT of 1 runs two more", () => {
    const { dev, desc, wr, kick } = rig();
    desc(DESC, { size: 0, src: SRC, dst: DST, next: DESC });
    kick(DESC, 65535);
    expect(dev.processedCount()).toBe(65535);
    wr(DMACOUNT, 2, 1);
    expect(dev.processedCount()).toBe(1);
    expect(dev.completed).toBe(65537);
  });

  it("the chain follows next: two descriptors alternate", () => {
    const { m, rd, desc, kick } = rig();
    desc(DESC, { size: 16, src: SRC, dst: DST, next: DESC + 64 });
    desc(DESC + 64, { size: 16, src: SRC + 16, dst: DST + 16, next: DESC });
    kick(DESC, 2);
    expect(rd(CHANSTS, 8)).toBe(BigInt(DESC + 64) | 1n);
    expect(m.phys.read(DST, 32)).toEqual(m.phys.read(SRC, 32));
  });

  it("a fault in the second descriptor: the first stays done, the second writes nothing, CHANSTS names the first", () => {
    const { m, dev, rd, desc, kick } = rig();
    desc(DESC, { size: 16, src: SRC, dst: DST, next: DESC + 64 });
    desc(DESC + 64, { size: 16, src: 2 ** 44, dst: DST + 16, next: DESC });
    kick(DESC, 2);
    expect(rd(CHANSTS, 8)).toBe(BigInt(DESC) | 3n);
    expect(rd(CDAR, 8)).toBe(BigInt(DESC + 64));
    expect(Number(rd(CHANERR, 4))).toBe(0x100); // no IOMMU: the read gets no completer
    expect(dev.configRead(0x180, 4)).toBe(0x100);
    expect(m.phys.read(DST, 16)).toEqual(m.phys.read(SRC, 16));
    expect(m.phys.read(DST + 16, 16)).toEqual(new Uint8Array(16));
    expect(dev.completed).toBe(1);
  });

  it("a descriptor fetch that fails is a read data error without an IOMMU; errors latch until cleared", () => {
    const { dev, rd, wr, desc, kick } = rig();
    kick(2 ** 44, 1);
    expect(Number(rd(CHANERR, 4))).toBe(0x100);
    expect(rd(CHANSTS, 8) & 7n).toBe(3n);
    // While CHANERR holds a bit the channel does not run.
    desc(DESC, { size: 16, src: SRC, dst: DST, next: DESC });
    kick(DESC, 1);
    expect(dev.completed).toBe(0);
    // RW1C: writing a 0 bit changes nothing, writing the bit back clears it.
    wr(CHANERR, 4, 0x1);
    expect(Number(rd(CHANERR, 4))).toBe(0x100);
    wr(CHANERR, 4, 0x100);
    expect(Number(rd(CHANERR, 4))).toBe(0);
    // The config mirror is RW1C too, and separate.
    expect(dev.configRead(0x180, 4)).toBe(0x100);
    dev.configWrite(0x180, 4, 0x100);
    expect(dev.configRead(0x180, 4)).toBe(0);
    kick(DESC, 1);
    expect(dev.completed).toBe(1);
    expect(rd(CHANSTS, 8) & 7n).toBe(1n);
  });

  it("descriptor checks: misaligned CHAINADDR, misaligned next, an unknown op, a copy above XFERCAP", () => {
    const cases: [string, (r: ReturnType<typeof rig>) => void, number][] = [
      ["chain address", (r) => r.kick(DESC + 8, 1), 0x10],
      [
        "next alignment",
        (r) => {
          r.desc(DESC, { size: 0, src: SRC, dst: DST, next: DESC + 32 });
          r.kick(DESC, 2);
        },
        0x08,
      ],
      [
        "control",
        (r) => {
          r.desc(DESC, { size: 16, ctl: 0x87 << 24, src: SRC, dst: DST, next: DESC });
          r.kick(DESC, 1);
        },
        0x400,
      ],
      [
        "length",
        (r) => {
          r.desc(DESC, { size: 4097, src: SRC, dst: DST, next: DESC });
          r.kick(DESC, 1);
        },
        0x800,
      ],
    ];
    for (const [name, go, err] of cases) {
      const r = rig();
      go(r);
      expect([name, Number(r.rd(CHANERR, 4)), r.rd(CHANSTS, 8) & 7n]).toEqual([name, err, 3n]);
      expect(r.m.phys.read(DST, 16)).toEqual(new Uint8Array(16));
    }
  });

  it("a null descriptor moves nothing; compl_write stores CHANSTS at CHANCMP", () => {
    const { m, rd, wr, desc, kick } = rig();
    desc(DESC, { size: 1, ctl: 0x20 | 0x08, src: SRC, dst: DST, next: DESC });
    wr(CHANCMP, 8, 0x40_0000);
    kick(DESC, 1);
    expect(m.phys.read(DST, 1)).toEqual(new Uint8Array(1));
    expect(rd(CHANSTS, 8)).toBe(BigInt(DESC) | 1n);
    const back = new DataView(m.phys.read(0x40_0000, 8).buffer).getBigUint64(0, true);
    expect(back).toBe(BigInt(DESC) | 1n);
  });

  it("CHANCMD RESET clears the channel registers, CHANERR and CHANERR_INT; the channel is HALTED", () => {
    const { dev, rd, wr, kick } = rig();
    kick(2 ** 44, 1);
    wr(CHANCMP, 8, 0x1234_0000);
    wr(CHANCMD, 1, 0x20);
    for (const off of [CHANCTRL, DMACOUNT, CHAINADDR, CHANCMP, CDAR, CHANERR]) expect(rd(off, 2)).toBe(0n);
    expect(rd(CHANSTS, 8)).toBe(3n);
    expect(dev.configRead(0x180, 4)).toBe(0);
    expect(dev.processedCount()).toBe(0);
  });

  it("without bus mastering nothing is fetched: a read data error, and the DMA log names the cause", () => {
    const { m, dev, rd, desc, kick } = rig();
    dev.configWrite(0x04, 2, 0x0402);
    desc(DESC, { size: 16, src: SRC, dst: DST, next: DESC });
    kick(DESC, 1);
    expect(Number(rd(CHANERR, 4))).toBe(0x100);
    const e = m.debug.dmaLog().at(-1)!;
    expect([e.op, e.result]).toEqual(["read", "fault"]);
    expect(e.finding).toContain("bus mastering");
  });

  it("byte and word accesses reach the same registers as qword ones (CHAINADDR as two dwords)", () => {
    const { dev, rd, wr, desc } = rig();
    desc(DESC, { size: 16, src: SRC, dst: DST, next: DESC });
    wr(CHAINADDR, 4, DESC);
    wr(CHAINADDR + 4, 4, 0);
    expect(rd(CHAINADDR, 8)).toBe(BigInt(DESC));
    wr(CHANCTRL, 1, 0x09);
    expect(rd(CHANCTRL, 2)).toBe(0x09n);
    wr(DMACOUNT, 2, 1);
    expect(dev.completed).toBe(1);
    expect(rd(CHANSTS, 1) & 7n).toBe(1n);
  });

  it("FLR returns the device to power-on", () => {
    const { dev, rd, wr, kick } = rig();
    wr(0x03, 1, 0x08);
    kick(2 ** 44, 1);
    dev.flr();
    dev.configWrite(0x04, 2, 0x0002); // FLR cleared memory decode too
    expect([rd(0x03, 1), rd(CHANERR, 4), rd(CHANSTS, 8)]).toEqual([0n, 0n, 3n]);
    expect(dev.configRead(0x180, 4)).toBe(0);
  });
});

describe("IOAT interrupts", () => {
  it("int_en with INT_REARM raises one MSI-X message and disarms; an error raises nothing unless ERR_INT_EN", () => {
    const { dev, rd, wr, desc, kick } = rig();
    const msgs: string[] = [];
    dev.msiSink = (_fn, msg) => msgs.push(`${msg.kind}:${msg.vector}`);
    // MSI-X on, vector 0 unmasked (what vfio-pci's SET_IRQS does for the host).
    const msix = dev.config.findCap(0x11);
    dev.mmioWrite(0, 0x2000 + 12, new Uint8Array(4));
    dev.configWrite(msix + 2, 2, 0x8000);
    desc(DESC, { size: 8, ctl: 1, src: SRC, dst: DST, next: DESC });
    kick(DESC, 3);
    expect(msgs).toEqual(["msix:0"]);
    expect(rd(CHANCTRL, 2)).toBe(0x08n); // INT_REARM consumed
    wr(DMACOUNT, 2, 4); // not rearmed: no interrupt
    expect(msgs).toEqual(["msix:0"]);
    kick(2 ** 44, 1, 0x0009);
    expect(msgs).toEqual(["msix:0"]);
    wr(CHANCMD, 1, 0x20);
    kick(2 ** 44, 1, 0x0019);
    expect(msgs).toEqual(["msix:0", "msix:0"]);
  });

  it("a masked vector sets its PBA bit and fires when unmasked", () => {
    const { dev, desc, kick } = rig();
    const msgs: number[] = [];
    dev.msiSink = (_fn, msg) => msgs.push(msg.vector);
    const msix = dev.config.findCap(0x11);
    dev.configWrite(msix + 2, 2, 0x8000);
    desc(DESC, { size: 8, ctl: 1, src: SRC, dst: DST, next: DESC });
    kick(DESC, 1);
    expect(msgs).toEqual([]);
    expect(dev.mmioRead(0, 0x3000, 8)[0]).toBe(1);
    dev.mmioWrite(0, 0x2000 + 12, new Uint8Array(4));
    expect(msgs).toEqual([0]);
    expect(dev.mmioRead(0, 0x3000, 8)[0]).toBe(0);
  });
});

describe("IOAT: one doorbell is one DMA batch", () => {
  it("a self-chained storm reads its descriptor and source once; every DMA is still logged", () => {
    const { m, dev, desc, kick } = rig();
    desc(DESC, { size: 4096, src: SRC, dst: DST, next: DESC });
    const logged = m.debug.dmaLog().length;
    kick(DESC, 100);
    expect(dev.completed).toBe(100);
    // 100 fetches and 100 source reads: all but the first of each answered by the batch
    expect(dev.dma.batchHits).toBe(198);
    expect(m.debug.dmaLog().length - logged).toBe(300);
    expect(m.phys.read(DST, 4096)).toEqual(m.phys.read(SRC, 4096));
  });

  it("a copy over its own descriptor: the next fetch reads the new descriptor, not the one read before", () => {
    const { m, dev, rd, desc, kick } = rig();
    // the source holds a descriptor with an opcode the channel refuses; the copy lands on DESC
    desc(SRC + 4096, { size: 64, ctl: 0x7f << 24, src: SRC, dst: DST, next: DESC });
    desc(DESC, { size: 64, src: SRC + 4096, dst: DESC, next: DESC });
    kick(DESC, 3);
    expect(dev.completed).toBe(1);
    expect(rd(CHANSTS, 8) & 7n).toBe(3n);
    expect(Number(rd(CHANERR, 4))).not.toBe(0);
    // and a later doorbell starts a new batch: memory changed between accesses is read again
    const hits = dev.dma.batchHits;
    desc(DESC, { size: 16, src: SRC, dst: DST, next: DESC });
    m.phys.write(SRC, new Uint8Array(16).fill(0xee));
    wrReset(dev);
    kick(DESC, 1);
    expect(m.phys.read(DST, 16)).toEqual(new Uint8Array(16).fill(0xee));
    expect(dev.dma.batchHits).toBe(hits);
  });
});

describe("IOAT: the batch's writes", () => {
  it("65 copies to one destination reach memory as one store, with the last copy's bytes", () => {
    const { m, dev, desc, kick } = rig();
    const stores: number[] = [];
    const page = new Uint8Array(4096);
    m.phys.external.set(DST / 4096, {
      read: (off, len) => page.slice(off, off + len),
      write: (off, b) => {
        stores.push(off);
        page.set(b, off);
      },
    });
    desc(DESC, { size: 4096, src: SRC, dst: DST, next: DESC });
    const logged = m.debug.dmaLog().length;
    kick(DESC, 65);
    expect(dev.completed).toBe(65);
    expect(stores).toEqual([0]);
    expect(dev.dma.batchCoalesced).toBe(64);
    expect(page).toEqual(m.phys.read(SRC, 4096));
    // each copy is still a logged write
    expect(
      m.debug
        .dmaLog()
        .slice(logged)
        .filter((e) => e.op === "write"),
    ).toHaveLength(65);
  });

  it("a read after a write of the batch sees it: a chain copies SRC to DST, then DST onward", () => {
    const { m, desc, kick } = rig();
    desc(DESC, { size: 16, src: SRC, dst: DST, next: DESC + 64 });
    desc(DESC + 64, { size: 16, src: DST, dst: DST + 4096, next: DESC });
    kick(DESC, 2);
    expect(m.phys.read(DST + 4096, 16)).toEqual(m.phys.read(SRC, 16));
  });

  it("the completion interrupt finds the copies before it in memory", () => {
    const { m, dev, desc, kick } = rig();
    const seen: Uint8Array[] = [];
    dev.msiSink = () => {
      seen.push(m.phys.read(DST, 16));
    };
    const msix = dev.config.findCap(0x11);
    dev.mmioWrite(0, 0x2000 + 12, new Uint8Array(4));
    dev.configWrite(msix + 2, 2, 0x8000);
    desc(DESC, { size: 16, ctl: 1, src: SRC, dst: DST, next: DESC });
    kick(DESC, 3);
    expect(seen).toEqual([m.phys.read(SRC, 16)]);
  });
});

/** CHANCMD RESET (clears the latched error so the channel runs again). */
function wrReset(dev: IoatDevice): void {
  dev.mmioWrite(0, CHANCMD, new Uint8Array([0x20]));
  const err = dev.mmioRead(0, CHANERR, 4);
  dev.mmioWrite(0, CHANERR, err);
}
