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
 * Node flags every long-running role starts with (the image's ENTRYPOINT, and the test rig). V8 sizes
 * the young generation from the machine's memory, up to 64 MiB per semi-space on a large node: after
 * 300 WAL.Archive calls a sidecar held 276 MiB resident, 128 MiB of it an almost empty young generation.
 * With 1 MiB semi-spaces, 1,000 archives ended at 173 MiB; with V8's size-over-speed heuristics on top,
 * at 130 MiB (+1.6 MiB between the 500th and the 1,000th), for no measurable difference per call: the
 * sidecar waits on pgBackRest, not on its own code. A smaller process also forks faster, and the sidecar
 * forks a pgBackRest for every segment: `spawn` blocks the event loop for a time that grows with the
 * resident size (7.6 ms a call at 250 MiB on the benchmark machine).
 */
export const NODE_FLAGS: ReadonlyArray<string> = ["--max-semi-space-size=1", "--optimize-for-size"]

/** The socket the instance manager scans: `<plugin-path>/<plugin name>`. */
export const socketPath = (pluginPath: string): string => `${pluginPath.replace(/\/+$/, "")}/${PLUGIN_NAME}`
