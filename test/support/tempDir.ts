import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { Effect } from "effect"

/** A fresh directory under the system temp dir, removed with the scope. */
export const tempDir = (prefix = "cnpg-pgbackrest-test-") =>
  Effect.acquireRelease(
    Effect.promise(() => fs.mkdtemp(path.join(os.tmpdir(), prefix))),
    (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true })),
  )
