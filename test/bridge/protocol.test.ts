import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { expect, it } from "vitest";
import {
  decodeRequest,
  encodeRequest,
  OP,
  PASSTHROUGH,
  REP_HAS_PINS,
  REP_SIZE,
  REP_SPARE_USED,
  REQ_SIZE,
  STAT_NOFOLLOW,
} from "../../src/bridge/protocol.js";
import { shimSourceDir } from "../../src/bridge/shim-build.js";

const header = readFileSync(join(shimSourceDir(), "bridge-proto.h"), "utf8");
const defines = new Map<string, number>();
for (const m of header.matchAll(/^#define (BR_\w+) \(?(-?\d+)(?:u << (\d+))?\)?/gm)) {
  defines.set(m[1], m[3] !== undefined ? Number(m[2]) << Number(m[3]) : Number(m[2]));
}

it("the TypeScript protocol matches the shim's header, op by op", () => {
  for (const [name, n] of Object.entries(OP)) expect(defines.get(`BR_OP_${name}`), name).toBe(n);
  expect(defines.get("BR_STAT_NOFOLLOW")).toBe(STAT_NOFOLLOW);
  expect(defines.get("BR_REP_SPARE_USED")).toBe(REP_SPARE_USED);
  expect(defines.get("BR_REP_HAS_PINS")).toBe(REP_HAS_PINS);
  expect(defines.get("BR_PASSTHROUGH")).toBe(PASSTHROUGH);
  expect(defines.get("BR_MAX_PAYLOAD")).toBe(1 << 20);
  // every op the header defines is one the server knows
  const ops = [...defines.keys()].filter((k) => k.startsWith("BR_OP_"));
  expect(ops.length).toBe(Object.keys(OP).length);
  expect(dirname(header) !== undefined).toBe(true);
});

it("requests round-trip; short input waits, a bad length is malformed", () => {
  const b = encodeRequest({
    op: OP.IOCTL,
    fd: 3,
    fd2: 9,
    a: 0x3b81n,
    b: 0x7fff0000n,
    payload: new Uint8Array([1, 2]),
  });
  expect(b.length).toBe(REQ_SIZE + 2);
  const r = decodeRequest(b);
  expect(
    typeof r === "object" && r !== null && r.req.op === OP.IOCTL && r.req.fd2 === 9 && r.size === b.length,
  ).toBe(true);
  expect(decodeRequest(b.subarray(0, 10))).toBeNull();
  const bad = Buffer.from(b);
  bad.writeUInt32LE(3, 0);
  expect(typeof decodeRequest(bad)).toBe("string");
  expect(REP_SIZE).toBe(16);
});
