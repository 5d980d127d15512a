import packageJson from "../../package.json" with { type: "json" }

/**
 * The plugin's identity as CloudNativePG sees it. `name` must equal the socket file name under
 * `/plugins` and the `cnpg.io/pluginName` label of the operator-side Service.
 */
export const PLUGIN_NAME = "pgbackrest.dalibo.com"

/** Version reported in GetPluginMetadata, taken from package.json so a release changes one place. */
export const PLUGIN_VERSION: string = packageJson.version

export const pluginMetadata = {
  name: PLUGIN_NAME,
  version: PLUGIN_VERSION,
  displayName: "pgBackRest",
  description: "Continuous WAL archiving, backups and restores of CloudNativePG clusters with pgBackRest",
  projectUrl: packageJson.homepage,
  repositoryUrl: packageJson.homepage,
  license: "Apache License 2.0",
  licenseUrl: "https://www.apache.org/licenses/LICENSE-2.0",
  maturity: "alpha",
  vendor: "dalibo",
} as const

/**
 * Node flags every long-running role starts with (the image's ENTRYPOINT, and the test rig).
 * - `--max-semi-space-size=1`: V8 sizes the young generation from the machine's memory, up to 64 MiB
 *   per semi-space on a large node. After 300 WAL.Archive calls a sidecar held 276 MiB resident,
 *   128 MiB of it an almost empty young generation. With 1 MiB semi-spaces, 1,000 archives ended at
 *   173 MiB for the same CPU time.
 * - `--single-threaded`: no V8 background threads for compiling and collecting. The sidecar's heap is
 *   small, so the main thread collects it in a few milliseconds, and each helper thread no longer grows
 *   its own malloc arena: 1,000 archives ended at 141 MiB instead of 177 MiB, and the calls took less
 *   CPU in all (the helpers were mostly overhead on two cores). Resident memory matters twice: Node
 *   starts pgBackRest with a fork, whose cost grows with it (0.8 ms at 53 MiB, 5 ms at 203 MiB on the
 *   benchmark machine).
 * - `--max-old-space-size=128`: without a cap V8 lets the old generation grow far past what is live
 *   (about 30 MiB) before it collects, by an amount that depends on the call rate and varies from run
 *   to run: 1,000 quick WAL.Archive calls ended between 115 and 240 MiB resident. Capped, they end at
 *   139 MiB at worst, for less CPU per call (a smaller process forks faster). The largest thing the
 *   sidecar holds is one pgBackRest stdout, limited to MAX_STDOUT_BYTES, which the cap leaves room to
 *   decode and parse (a test parses a limit-sized `info` under these flags).
 * - `--optimize-for-size` would save 40 MiB more, but cost a quarter more CPU per call and 100 ms
 *   more to start: not taken.
 */
export const NODE_FLAGS: ReadonlyArray<string> = [
  "--max-semi-space-size=1",
  "--single-threaded",
  "--max-old-space-size=128",
]

/** The default limit of one pgBackRest command's stdout: an `info` of about 10,000 backups. */
export const MAX_STDOUT_BYTES = 16 * 1024 * 1024

/** The socket the instance manager scans: `<plugin-path>/<plugin name>`. */
export const socketPath = (pluginPath: string): string => `${pluginPath.replace(/\/+$/, "")}/${PLUGIN_NAME}`
