import { execFileSync, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import { builtinModules } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Either } from "effect"
import { NODE_FLAGS } from "../../src/cli/nodeFlags.js"
import { sidecarPatch } from "../../src/domain/sidecar.js"
import { ROOT, read } from "./support.js"

/**
 * The Containerfile, read statically (no container engine here): its stages, what it copies, whom it
 * runs as and how it starts. What it copies from the build stage is checked against a real
 * `node scripts/build.mjs main`, run in a scratch directory so that dist/ is left alone.
 */

interface Instruction {
  readonly keyword: string
  readonly args: string
}

interface Stage {
  readonly from: string
  readonly name: string | undefined
  readonly instructions: ReadonlyArray<Instruction>
}

const parse = (text: string): ReadonlyArray<Stage> => {
  const logical = text
    .replace(/\\\n/g, " ")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"))
  const stages: Array<{ from: string; name: string | undefined; instructions: Array<Instruction> }> = []
  for (const line of logical) {
    const [keyword = "", ...rest] = line.split(/\s+/)
    const args = rest.join(" ")
    if (keyword.toUpperCase() === "FROM") {
      const match = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args)
      stages.push({ from: match?.[1] ?? args, name: match?.[2], instructions: [] })
    } else {
      stages[stages.length - 1]?.instructions.push({ keyword: keyword.toUpperCase(), args })
    }
  }
  return stages
}

const stages = parse(read("Containerfile"))
const build = stages.find((stage) => stage.name === "build")
const runtime = stages[stages.length - 1]
const all = (stage: Stage | undefined, keyword: string) =>
  (stage?.instructions ?? []).filter((instruction) => instruction.keyword === keyword)

/** The exec form of an instruction (`["a", "b"]`). */
const execForm = (instruction: Instruction | undefined): ReadonlyArray<string> => {
  const parsed: unknown = JSON.parse(instruction?.args ?? "null")
  return Array.isArray(parsed) ? parsed.map(String) : []
}

/** The probe command of the injected sidecar: where the program is expected in the image. */
const sidecarProgram = (): string => {
  const fixture = (name: string): unknown =>
    JSON.parse(fs.readFileSync(`test/fixtures/cnpg/${name}.json`, "utf8"))
  const patch = sidecarPatch(fixture("cluster-demo"), fixture("pod-cluster-demo-1"), {
    image: "x",
    logLevel: "info",
  })
  const text = JSON.stringify(Either.isRight(patch) ? patch.right : [])
  const match = /"command":\["node","([^"]+)","healthcheck"\]/.exec(text)
  assert.isNotNull(match, "the sidecar's startupProbe runs node <program> healthcheck")
  return match?.[1] ?? ""
}

describe("Containerfile", () => {
  it("has a build stage and a runtime stage on Node 24 (Debian bookworm, slim)", () => {
    assert.deepStrictEqual(
      stages.map((stage) => [stage.from, stage.name]),
      [
        ["docker.io/library/node:24-bookworm-slim", "build"],
        ["docker.io/library/node:24-bookworm-slim", "runtime"],
      ],
    )
  })

  it("runs as uid/gid 26 (postgres, as in CloudNativePG's images), the Deployment's runAsUser", () => {
    assert.deepStrictEqual(
      all(runtime, "USER").map((instruction) => instruction.args),
      ["26:26"],
    )
    assert.match(read("kubernetes/deployment.yaml"), /runAsUser: 26\n/)
  })

  it("starts the program under tini, where the sidecar's probe expects it", () => {
    const entrypoint = execForm(all(runtime, "ENTRYPOINT")[0])
    assert.deepStrictEqual(entrypoint.slice(0, 3), ["/usr/bin/tini", "--", "node"])
    assert.deepStrictEqual(entrypoint.slice(3, -1), [...NODE_FLAGS])
    assert.strictEqual(entrypoint[entrypoint.length - 1], sidecarProgram())
    assert.include(
      all(runtime, "RUN")
        .map((instruction) => instruction.args)
        .join(" "),
      " tini",
    )
  })

  it("fills V8's compile cache as the runtime user, with the ENTRYPOINT's flags (Node keys the cache on both)", () => {
    const program = sidecarProgram()
    const instructions = runtime?.instructions ?? []
    const at = (keyword: string, args: string) =>
      instructions.findIndex((instruction) => instruction.keyword === keyword && instruction.args === args)
    const cache = `${path.dirname(program)}/compile-cache`
    const created = at("RUN", `install -d -o 26 -g 26 ${cache}`)
    const user = at("USER", "26:26")
    const env = at("ENV", `NODE_COMPILE_CACHE=${cache}`)
    const fill = at("RUN", ["node", ...NODE_FLAGS, program, "--version"].join(" "))
    assert.isAtLeast(created, 0, "the cache directory belongs to uid 26")
    assert.isAbove(user, created)
    assert.isAbove(env, user)
    assert.isAbove(fill, env, "filled after USER 26:26 and NODE_COMPILE_CACHE")
    // Nothing after the fill may change what the program starts with.
    assert.deepStrictEqual(
      instructions.slice(fill + 1).map((instruction) => instruction.keyword),
      ["ENTRYPOINT", "CMD"],
    )
  })

  it("installs pgBackRest, tini and CA certificates, and no build tools, in the runtime stage", () => {
    const run = all(runtime, "RUN")
      .map((instruction) => instruction.args)
      .join(" ")
    const install = /apt-get install -y --no-install-recommends ([^&]+)/.exec(run)
    assert.deepStrictEqual(install?.[1]?.trim().split(/\s+/).sort(), [
      "ca-certificates",
      "pgbackrest",
      "tini",
    ])
    for (const tool of [
      /\bnpm (ci|install)\b/,
      /\bgcc\b/,
      /\bmake\b/,
      /build-essential/,
      /\bpython3?\b/,
      /\bgit\b/,
      /\bcurl\b/,
    ]) {
      assert.notMatch(run, tool)
    }
    // npm, npx and corepack removed: the runtime runs one bundle and installs nothing.
    for (const removed of [
      "/usr/local/lib/node_modules/npm",
      "/usr/local/bin/npm",
      "/usr/local/bin/npx",
      "/usr/local/bin/corepack",
    ]) {
      assert.include(run, removed)
    }
    assert.include(run, "rm -rf /var/lib/apt/lists/*")
    // Only the bundle comes from the build stage: no node_modules, no sources.
    for (const copy of all(runtime, "COPY")) {
      assert.match(copy.args, /^--from=build \/src\/dist\//)
      assert.notInclude(copy.args, "node_modules")
    }
  })

  it("copies into the build stage files that exist", () => {
    for (const copy of all(build, "COPY")) {
      const parts = copy.args.split(/\s+/)
      for (const source of parts.slice(0, -1)) {
        assert.isTrue(fs.existsSync(path.join(ROOT, source)), source)
      }
    }
    assert.deepStrictEqual(
      all(build, "RUN").map((instruction) => instruction.args),
      ["npm ci --no-audit --no-fund --ignore-scripts=false", "node scripts/build.mjs main"],
    )
  })

  describe("after `node scripts/build.mjs main`", () => {
    let scratch = ""
    beforeAll(() => {
      // The build stage's /src: the sources and the locked dependencies, built where dist/ is not ours.
      scratch = fs.mkdtempSync(path.join(os.tmpdir(), "cnpg-pgbackrest-image-"))
      for (const entry of ["package.json", "package-lock.json", "scripts", "src", "node_modules"]) {
        fs.symlinkSync(path.join(ROOT, entry), path.join(scratch, entry))
      }
      execFileSync(process.execPath, ["scripts/build.mjs", "main"], { cwd: scratch, stdio: "pipe" })
    }, 120_000)
    afterAll(() => {
      if (scratch !== "") {
        fs.rmSync(scratch, { recursive: true, force: true })
      }
    })

    it("has every file the runtime stage copies", () => {
      const copies = all(runtime, "COPY")
      assert.isNotEmpty(copies)
      for (const copy of copies) {
        const parts = copy.args.replace(/^--from=build\s+/, "").split(/\s+/)
        const target = parts[parts.length - 1]
        assert.strictEqual(target, "/opt/cnpg-pgbackrest/")
        for (const source of parts.slice(0, -1)) {
          const file = path.join(scratch, path.relative("/src", source))
          assert.isTrue(fs.existsSync(file), `${source} is not built`)
        }
      }
    })

    it("fills, with `--version`, a compile cache that the program's next start with NODE_FLAGS accepts", () => {
      const cache = path.join(scratch, "compile-cache")
      const start = () =>
        spawnSync(process.execPath, [...NODE_FLAGS, path.join(scratch, "dist/main.js"), "--version"], {
          env: {
            PATH: process.env.PATH ?? "/usr/bin:/bin",
            NODE_COMPILE_CACHE: cache,
            NODE_DEBUG_NATIVE: "COMPILE_CACHE",
          },
          encoding: "utf8",
        })
      const fill = start()
      assert.strictEqual(fill.status, 0, fill.stderr)
      assert.notMatch(fill.stderr, /was accepted/)
      const next = start()
      assert.strictEqual(next.status, 0, next.stderr)
      assert.match(next.stderr, /V8 code cache for ESM file:\/\/\S+\/dist\/main\.js was accepted/)
    })

    it("builds a bundle that needs nothing but Node's own modules", () => {
      const bundle = fs.readFileSync(path.join(scratch, "dist/main.js"), "utf8")
      const specifiers = new Set(
        [...bundle.matchAll(/(?:\bfrom\s*|\bimport\(\s*|require\(\s*)"([@A-Za-z0-9][\w./@:-]*)"/g)].map(
          (match) => match[1] ?? "",
        ),
      )
      // ws's optional native helpers, loaded in a try/catch.
      const optional = new Set(["bufferutil", "utf-8-validate"])
      const builtins = new Set(builtinModules)
      for (const specifier of specifiers) {
        const bare = specifier.replace(/^node:/, "")
        assert.isTrue(
          builtins.has(bare) || specifier.startsWith("node:") || optional.has(specifier),
          `the bundle loads ${specifier} at run time`,
        )
      }
      assert.isAtLeast(specifiers.size, 10)
    })
  })
})
