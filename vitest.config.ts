import { defineConfig } from "vitest/config";

// CI asks for a JSON report (VITEST_JSON_REPORT) to print its one-line summary.
const json = process.env.VITEST_JSON_REPORT;

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    pool: "threads",
    testTimeout: 60_000,
    reporters: json ? ["default", ["json", { outputFile: json }]] : ["default"],
  },
});
