import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["**/*.test.ts"],
    exclude: ["node_modules/**", "generated/**"],
    reporters: ["default", "./test/summary-reporter.ts"],
    // Asks for a WebGPU adapter once; test/machine.ts skips the GPU tests without one (and says why).
    globalSetup: ["./test/global-setup.ts"],
    testTimeout: 60_000,
    pool: "forks",
  },
});
