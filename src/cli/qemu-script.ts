/**
 * The qtest scripts of `iommufd-sim qemu` (docs/qemu.md, examples/qemu/):
 * one qtest command a line, as QEMU's `-qtest stdio` reads it, plus
 *   `# comment`            ignored
 *   `echo TEXT`            printed to the transcript, not sent
 *   `CMD => EXPECTED`      send CMD, and check QEMU's reply against EXPECTED
 *   `poll CMD => EXPECTED` send CMD again (every 20 ms, up to 10 s) until the
 *                          reply matches: QEMU's main loop handles the device's
 *                          eventfds between commands
 * A `"text"` in a `write ADDR "text"` command or in EXPECTED stands for its
 * bytes in hex (`write ADDR LEN 0x...`, `OK 0x...`).
 */
export type QtestStep =
  | { kind: "echo"; line: number; text: string }
  | { kind: "send"; line: number; cmd: string; expect?: string[]; poll: boolean };

/** The bytes of a string literal as qtest's hex (`0x` and two digits a byte). */
function hexOf(text: string): string {
  return `0x${Buffer.from(text, "utf8").toString("hex")}`;
}

/** Replace `"..."` literals by their hex; for `write ADDR "text"` also insert the length. */
function expandLiterals(s: string, isCommand: boolean): string {
  if (isCommand) {
    const w = /^write\s+(\S+)\s+"(.*)"$/.exec(s);
    if (w) return `write ${w[1]} ${Buffer.byteLength(w[2], "utf8")} ${hexOf(w[2])}`;
  }
  return s.replace(/"([^"]*)"/g, (_m, t: string) => hexOf(t));
}

/** Parse a script; throws Error(`line N: ...`) on a line it cannot read. */
export function parseQtestScript(text: string): QtestStep[] {
  const steps: QtestStep[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i].trim();
    const line = i + 1;
    if (raw === "" || raw.startsWith("#")) continue;
    if (raw === "echo" || raw.startsWith("echo ")) {
      steps.push({ kind: "echo", line, text: raw.slice(5) });
      continue;
    }
    let body = raw;
    let poll = false;
    if (body.startsWith("poll ")) {
      poll = true;
      body = body.slice(5).trim();
    }
    const arrow = body.indexOf("=>");
    const cmd = expandLiterals((arrow >= 0 ? body.slice(0, arrow) : body).trim(), true);
    if (cmd === "") throw new Error(`line ${line}: no command before "=>"`);
    let expect: string[] | undefined;
    if (arrow >= 0) {
      expect = expandLiterals(body.slice(arrow + 2).trim(), false)
        .split(/\s+/)
        .filter((t) => t !== "");
      if (expect.length === 0) throw new Error(`line ${line}: nothing after "=>"`);
    }
    if (poll && expect === undefined) throw new Error(`line ${line}: poll needs "=> EXPECTED"`);
    steps.push({ kind: "send", line, cmd, expect, poll });
  }
  return steps;
}

/** A hex or decimal number token as a bigint, or null. */
function num(tok: string): bigint | null {
  if (/^0x[0-9a-f]+$/i.test(tok) || /^\d+$/.test(tok)) return BigInt(tok);
  return null;
}

/**
 * Does QEMU's reply match? Token by token; numbers compare by value (qtest
 * prints `inl` unpadded and `readq` padded), other tokens exactly.
 */
export function replyMatches(reply: string, expect: string[]): boolean {
  const got = reply.trim().split(/\s+/);
  if (got.length !== expect.length) return false;
  for (let i = 0; i < got.length; i++) {
    const a = num(got[i]);
    const b = num(expect[i]);
    if (a !== null && b !== null ? a !== b : got[i] !== expect[i]) return false;
  }
  return true;
}
