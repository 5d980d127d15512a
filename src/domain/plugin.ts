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

/** The socket the instance manager scans: `<plugin-path>/<plugin name>`. */
export const socketPath = (pluginPath: string): string => `${pluginPath.replace(/\/+$/, "")}/${PLUGIN_NAME}`
