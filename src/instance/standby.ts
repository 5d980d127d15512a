import * as path from "node:path"
import { FileSystem } from "@effect/platform"
import { Effect } from "effect"
import { InstanceSettings } from "./settings.js"

/**
 * Whether the PostgreSQL instance of this pod runs as a standby now: CloudNativePG keeps a
 * `standby.signal` in PGDATA of every replica and removes it on promotion, so the answer can change
 * between two calls. Built once in a service's constructor; an unreadable PGDATA counts as primary.
 */
export const standbyCheck: Effect.Effect<
  Effect.Effect<boolean>,
  never,
  FileSystem.FileSystem | InstanceSettings
> = Effect.gen(function* () {
  const fs = yield* FileSystem.FileSystem
  const settings = yield* InstanceSettings
  const signal = path.join(settings.pgData, "standby.signal")
  return fs.exists(signal).pipe(Effect.orElseSucceed(() => false))
})
