import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/**
 * Tests of the built package (dist/). `npm test` builds dist/ before vitest,
 * and CI runs `npm test`: there they must run (and fail if dist/ is missing),
 * never pass silently. A bare `npx vitest` without a build skips them, and
 * says why in the test's name.
 */
export function distFile(rel: string): string {
  return fileURLToPath(new URL(`../dist/${rel}`, import.meta.url));
}

const mustRun = process.env.CI !== undefined || process.env.npm_lifecycle_event === "test";

/** True when a test needing these dist/ files should be skipped (not built, and not under npm test or CI). */
export function skipWithoutDist(...rel: string[]): boolean {
  return !mustRun && !rel.every((r) => existsSync(distFile(r)));
}

/** The same for a test that finds its built files itself: skip only outside npm test and CI. */
export function skipUnlessBuilt(built: boolean): boolean {
  return !mustRun && !built;
}

export const NEEDS_DIST = "(needs dist/: skipped until `npm run build`)";
