import { Redacted } from "effect"
import type { PgBackRestEnv } from "./stanzaEnv.js"

/**
 * pgBackRest options for one command, as environment variables of the child process
 * (`PGBACKREST_STANZA`, `PGBACKREST_REPO1_S3_KEY_SECRET`, ...); built from a Stanza in `stanzaEnv.ts`.
 */
export type { PgBackRestEnv }

/** The few variables every pgBackRest child gets besides its options. */
export interface BaseEnv {
  readonly PATH: string
  readonly HOME: string
}

/**
 * The complete environment of a pgBackRest child: the base variables, `LANG=C` (libpq messages quoted
 * by pgBackRest stay in English) and the options. Nothing else is inherited from the plugin's own
 * environment: Kubernetes injects `PGBACKREST_SERVICE_PORT` & co. for a Service named `pgbackrest`,
 * which pgBackRest would read as (invalid) options.
 */
export const childEnvironment = (base: BaseEnv, env: PgBackRestEnv): Record<string, string> => {
  const result: Record<string, string> = { PATH: base.PATH, HOME: base.HOME, LANG: "C" }
  for (const [name, value] of Object.entries(env)) {
    result[name] = Redacted.isRedacted(value) ? Redacted.value(value) : value
  }
  return result
}

/** The secret values of an environment, longest first, to scrub from anything we report. */
export const secretValues = (env: PgBackRestEnv): ReadonlyArray<string> =>
  Object.values(env)
    .flatMap((value) => (Redacted.isRedacted(value) ? [Redacted.value(value)] : []))
    .filter((value) => value.length > 0)
    .sort((a, b) => b.length - a.length)
