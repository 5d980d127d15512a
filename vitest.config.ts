import { defineConfig } from "vitest/config"

// Two projects: fast unit tests (pure logic, in-process servers on temp sockets) and e2e tests that
// drive real PostgreSQL, pgBackRest and an HTTPS S3 endpoint. `npm test` runs both.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["test/**/*.test.ts"],
          exclude: ["test/e2e/**"],
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
    ],
  },
})
