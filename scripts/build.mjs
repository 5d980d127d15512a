// Production bundle: one ESM file per entry point in dist/, so a sidecar starts without resolving
// hundreds of modules from node_modules. grpc-js and friends are CommonJS: the banner gives them
// `require` inside the ES module.
import { chmod, rm } from "node:fs/promises"
import { build } from "esbuild"

await rm("dist", { recursive: true, force: true })
await build({
  entryPoints: { main: "src/main.ts", "local-run": "scripts/local-run.ts", bench: "bench/archive.ts" },
  outdir: "dist",
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node24",
  sourcemap: "linked",
  legalComments: "linked",
  logLevel: "warning",
  banner: {
    js: [
      "#!/usr/bin/env node",
      'import { createRequire as __createRequire } from "node:module";',
      "const require = __createRequire(import.meta.url);",
    ].join("\n"),
  },
})
await chmod("dist/main.js", 0o755)
await chmod("dist/local-run.js", 0o755)
