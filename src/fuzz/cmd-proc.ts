// Processes, memory and plain files: spawn, exit, mmap (MAP_LOCKED too),
// munmap, close, dup, memfd_create, ftruncate, eventfd and its read.
import { uapi } from "../index.js";
import { alive, Base, expectRc, fdsOf, fileOf, pick, roomForFd, strayFd, Violation } from "./cmd-base.js";
import { closeFd, filePut, fileRef, getFile, newFile } from "./model-ops.js";
import { lowestFreeFd, MAX_PROCS, type Model, note, PAGE, type Real } from "./world.js";

const { EBADF, EINVAL, EAGAIN } = uapi;
const MAP_PRIVATE_ANON = uapi.MAP_PRIVATE | uapi.MAP_ANONYMOUS;
const { MAP_LOCKED } = uapi;

/** Extra capabilities a spawned process may get: none, CAP_SYS_RESOURCE (RLIMIT_MODE), CAP_IPC_LOCK (no accounting). */
export const SPAWN_PRIVS = [[], ["CAP_SYS_RESOURCE"], ["CAP_IPC_LOCK"], ["CAP_SYS_RESOURCE", "CAP_IPC_LOCK"]];

export class Spawn extends Base {
  constructor(readonly priv = 0) {
    super();
  }
  ok(m: Readonly<Model>): boolean {
    return m.procs.filter((p) => p.alive).length < MAX_PROCS && m.procs.length < 12;
  }
  act(m: Model, r: Real) {
    const caps = [...m.spec.caps, ...SPAWN_PRIVS[this.priv % SPAWN_PRIVS.length]];
    const p = r.m.spawn({ rlimitMemlock: 64n << 20n, caps });
    const va = p.mmap(0n, 8192n, 3, MAP_PRIVATE_ANON);
    if (va < 0n) throw new Violation(`mmap of the argument page failed: ${va}`);
    if (p.writeMemory(va, new Uint8Array(8192)) !== 0) throw new Violation("argument page not writable");
    r.procs.push(p);
    r.argVa.push(va);
    m.procs.push({ alive: true, fds: new Map(), bufs: [], bars: [] });
  }
  toString() {
    return `spawn(${SPAWN_PRIVS[this.priv % SPAWN_PRIVS.length].join("+") || "unprivileged"})`;
  }
}

/** exit(): every fd closed (highest first, as the kernel's close_files walks), then the mm with its BAR mmaps. */
export function exitInModel(m: Model, p: number): void {
  const mp = m.procs[p];
  for (const fd of [...mp.fds.keys()].sort((a, b) => b - a)) closeFd(m, p, fd);
  for (const b of mp.bars) filePut(m, b.file);
  mp.bars = [];
  mp.alive = false;
  mp.bufs = [];
  for (const c of m.ctxs.values()) if (c.proc === p) throw new Violation(`model: ctx ${c.key} outlived exit`);
}

export class Exit extends Base {
  constructor(override readonly p: number) {
    super();
  }
  ok(m: Readonly<Model>) {
    return alive(m, this.P);
  }
  act(m: Model, r: Real) {
    if (m.devs.some((d) => d.bound !== undefined || d.groupFiles.length > 0))
      note(m, "exit with a device open");
    r.procs[this.P].exit();
    exitInModel(m, this.P);
  }
  toString() {
    return `exit(p${this.P})`;
  }
}

export class Mmap extends Base {
  constructor(
    override readonly p: number,
    readonly pages: number,
    readonly locked: boolean,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return alive(m, this.P) && m.procs[this.P].bufs.length < 8;
  }
  act(m: Model, r: Real) {
    const len = BigInt(this.pages) * PAGE;
    const va = r.procs[this.P].mmap(0n, len, 3, MAP_PRIVATE_ANON | (this.locked ? MAP_LOCKED : 0));
    if (va < 0n) throw new Violation(`mmap(${len}${this.locked ? ", MAP_LOCKED" : ""}) failed: ${va}`);
    m.procs[this.P].bufs.push({ va, len, locked: this.locked });
    if (this.locked) note(m, "mmap MAP_LOCKED");
  }
  toString() {
    return `mmap(p${this.P}, ${this.pages} pages${this.locked ? ", locked" : ""})`;
  }
}

export class Munmap extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly bad: number,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return alive(m, this.P);
  }
  act(m: Model, r: Real) {
    const mp = m.procs[this.P];
    const b = pick(mp.bufs, this.i);
    if (this.bad === 1 || b === undefined) {
      expectRc(r, "munmap(unaligned)", r.procs[this.P].munmap(0x10001n, 4096n), -EINVAL);
      return;
    }
    if (this.bad === 2) {
      expectRc(r, "munmap(len 0)", r.procs[this.P].munmap(b.va, 0n), -EINVAL);
      return;
    }
    if (this.bad === 3 && mp.bars.length > 0) {
      // A BAR mmap goes: it held the device file.
      const bar = pick(mp.bars, this.i)!;
      expectRc(r, "munmap(BAR0)", r.procs[this.P].munmap(bar.va, 4096n), 0);
      mp.bars.splice(mp.bars.indexOf(bar), 1);
      filePut(m, bar.file);
      note(m, "munmap BAR");
      return;
    }
    expectRc(r, "munmap", r.procs[this.P].munmap(b.va, b.len), 0);
    mp.bufs.splice(mp.bufs.indexOf(b), 1);
  }
  toString() {
    return `munmap(p${this.P}, buf ${this.i}${this.bad ? `, bad ${this.bad}` : ""})`;
  }
}

export class Close extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly stray: boolean,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return alive(m, this.P);
  }
  act(m: Model, r: Real) {
    const mp = m.procs[this.P];
    const fds = [...mp.fds.keys()].sort((a, b) => a - b);
    const fd = pick(fds, this.i);
    if (this.stray || fd === undefined) {
      const n = strayFd(m, this.P, this.i);
      expectRc(r, `close(${n}) not open in p${this.P}`, r.procs[this.P].close(n), -EBADF);
      return;
    }
    expectRc(r, `close(${fd})`, r.procs[this.P].close(fd), 0);
    closeFd(m, this.P, fd);
  }
  toString() {
    return `close(p${this.P}, #${this.i}${this.stray ? ", stray" : ""})`;
  }
}

/** dup(fd): the same file under the lowest free number; the file lives until both are closed. */
export class Dup extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return roomForFd(m, this.P) && m.procs[this.P].fds.size > 0;
  }
  act(m: Model, r: Real) {
    const mp = m.procs[this.P];
    const fd = pick(
      [...mp.fds.keys()].sort((a, b) => a - b),
      this.i,
    )!;
    const want = lowestFreeFd(mp);
    expectRc(r, `dup(${fd})`, r.procs[this.P].dup(fd), want);
    const key = mp.fds.get(fd)!;
    fileRef(m, key);
    mp.fds.set(want, key);
    note(m, `dup ${getFile(m, this.P, fd)!.kind}`);
  }
  toString() {
    return `dup(p${this.P}, #${this.i})`;
  }
}

export class MemfdCreate extends Base {
  constructor(
    override readonly p: number,
    readonly pages: number,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return roomForFd(m, this.P);
  }
  act(m: Model, r: Real) {
    const mp = m.procs[this.P];
    const want = lowestFreeFd(mp);
    const fd = r.procs[this.P].memfdCreate("guest-ram");
    expectRc(r, "memfd_create", fd, want);
    const mf = m.nextKey++;
    m.memfds.set(mf, { key: mf, size: 0n, refs: 1 });
    mp.fds.set(fd, newFile(m, { kind: "memfd", mf }));
    const len = BigInt(this.pages) * PAGE;
    expectRc(r, "ftruncate(new memfd)", r.procs[this.P].ftruncate(fd, len), 0);
    m.memfds.get(mf)!.size = len;
  }
  toString() {
    return `memfd_create(p${this.P}, ${this.pages} pages)`;
  }
}

/** ftruncate of a memfd: shrinking while pages are mapped or pinned (they stay pinned). */
export class Ftruncate extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly pages: number,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return fdsOf(m, this.P, "memfd").length > 0;
  }
  act(m: Model, r: Real) {
    const fd = pick(fdsOf(m, this.P, "memfd"), this.i)!;
    const f = fileOf(m, this.P, fd, "memfd");
    const len = BigInt(this.pages) * PAGE;
    expectRc(r, `ftruncate(${fd}, ${len})`, r.procs[this.P].ftruncate(fd, len), 0);
    const mf = m.memfds.get(f.mf)!;
    if (len < mf.size) note(m, "memfd shrink");
    mf.size = len;
  }
  toString() {
    return `ftruncate(p${this.P}, memfd #${this.i}, ${this.pages} pages)`;
  }
}

export class Eventfd extends Base {
  constructor(override readonly p: number) {
    super();
  }
  ok(m: Readonly<Model>) {
    return roomForFd(m, this.P);
  }
  act(m: Model, r: Real) {
    const mp = m.procs[this.P];
    const want = lowestFreeFd(mp);
    expectRc(r, "eventfd", r.procs[this.P].eventfd(0, uapi.EFD_NONBLOCK), want);
    mp.fds.set(want, newFile(m, { kind: "eventfd", count: 0n }));
  }
  toString() {
    return `eventfd(p${this.P})`;
  }
}

/** read() of an eventfd: the completions the device signalled since the last read, or EAGAIN. */
export class ReadEventfd extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return fdsOf(m, this.P, "eventfd").length > 0;
  }
  act(m: Model, r: Real) {
    const fd = pick(fdsOf(m, this.P, "eventfd"), this.i)!;
    const f = fileOf(m, this.P, fd, "eventfd");
    const got = r.procs[this.P].read(fd, 8);
    if (f.count === 0n)
      return expectRc(r, "read(eventfd) with nothing signalled", typeof got === "number" ? got : 8, -EAGAIN);
    if (typeof got === "number") throw new Violation(`read(eventfd): ${got}, model expects ${f.count}`);
    const v = new DataView(got.buffer, got.byteOffset, 8).getBigUint64(0, true);
    if (v !== f.count) throw new Violation(`read(eventfd): ${v} interrupts, model expects ${f.count}`);
    note(m, "msi read");
    f.count = 0n;
  }
  toString() {
    return `read(p${this.P}, eventfd #${this.i})`;
  }
}
