/**
 * Node flags every long-running role starts with: the image's ENTRYPOINT (a test keeps the two equal)
 * and the test rig. Each one was measured with the benchmark; `bench/README.md` says what it saved and
 * what it cost. The heap cap is sized with `MAX_STDOUT_BYTES` (adapters/pgBackRest.ts): raising one
 * means raising the other.
 */
export const NODE_FLAGS: ReadonlyArray<string> = [
  "--max-semi-space-size=1",
  "--single-threaded",
  "--max-old-space-size=128",
]
