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
 * With 1 MiB semi-spaces, 1,000 archives end at 173 MiB for the same CPU time. `--optimize-for-size`
 * would save 40 MiB more, but cost a quarter more CPU per call and 100 ms more to start: not taken.
 */
export const NODE_FLAGS: ReadonlyArray<string> = ["--max-semi-space-size=1"]

/** The socket the instance manager scans: `<plugin-path>/<plugin name>`. */
export const socketPath = (pluginPath: string): string => `${pluginPath.replace(/\/+$/, "")}/${PLUGIN_NAME}`
