import { defineConfig } from "vitest/config"

// Three projects: fast unit tests (pure logic, in-process servers on temp sockets), e2e tests that
// drive real PostgreSQL, pgBackRest and an HTTPS S3 endpoint, and the fault table (`npm run
// test:faults`), the same real parts under injected faults. `npm test` runs all three.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["test/**/*.test.ts"],
          exclude: ["test/e2e/**", "test/faults/**"],
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: "e2e",
          include: ["test/e2e/**/*.test.ts"],
          testTimeout: 180_000,
          hookTimeout: 120_000,
          // Each e2e file starts its own PostgreSQL and S3 endpoint: two cores, so keep files serial.
          pool: "forks",
          poolOptions: { forks: { singleFork: true } },
        },
      },
      {
        test: {
          name: "faults",
          include: ["test/faults/**/*.test.ts"],
          // After unit and e2e: faults are injected on a timeline, and two cores shared with the e2e
          // files would blur the time-to-recover column.
          sequence: { groupOrder: 1 },
          globalSetup: ["test/faults/globalSetup.ts"],
          testTimeout: 300_000,
          hookTimeout: 120_000,
          pool: "forks",
          poolOptions: { forks: { singleFork: true } },
        },
      },
    ],
  },
})
