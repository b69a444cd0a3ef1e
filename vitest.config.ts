import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/helpers/global-setup.ts"],
    // Two files at a time on the 2-core CI machine (vitest's default is one there: cores - 1). Most files wait on
    // timers, sockets and child processes rather than compute: measured on this machine, the whole suite took
    // 740 s with one worker and 459 s with two, with no failures (both with other work running beside it).
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
