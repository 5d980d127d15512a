import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import { CONFIG, minimalStanza, REPO, withValue } from "./corpus.js"
import { apiServer, plugin } from "./stanzaCrd.js"
import type { Json } from "./support.js"

/**
 * The CRD's patterns against the plugin's filters, on many generated strings: exhaustively where the
 * alphabet is small, else a fixed pseudo-random sample.
 */
describe("the Stanza CRD", () => {
  describe("patterns decide like the plugin's filters", () => {
    /** Every string over `alphabet` up to `length` characters. */
    const strings = (alphabet: string, length: number): ReadonlyArray<string> => {
      const out = [""]
      let layer = [""]
      for (let size = 1; size <= length; size++) {
        layer = layer.flatMap((prefix) => [...alphabet].map((char) => prefix + char))
        out.push(...layer)
      }
      return out
    }
    /** A deterministic pseudo-random sample (mulberry32), so a failure reproduces. */
    const sample = (
      alphabet: string,
      count: number,
      maxLength: number,
      seed: number,
    ): ReadonlyArray<string> => {
      let state = seed
      const next = () => {
        state = (state + 0x6d2b79f5) | 0
        let t = Math.imul(state ^ (state >>> 15), 1 | state)
        t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296
      }
      return Array.from({ length: count }, () =>
        Array.from(
          { length: Math.floor(next() * (maxLength + 1)) },
          () => alphabet[Math.floor(next() * alphabet.length)],
        ).join(""),
      )
    }
    const agree = (
      path: ReadonlyArray<string | number>,
      values: ReadonlyArray<string>,
      base: Json = minimalStanza(),
    ) => {
      let accepted = 0
      for (const value of values) {
        const object = withValue(base, path, value)
        const byPlugin = Either.isRight(plugin(object))
        const byApi = apiServer(object).errors.length === 0
        assert.strictEqual(
          byApi,
          byPlugin,
          `${JSON.stringify(value)}: API server ${byApi}, plugin ${byPlugin}`,
        )
        accepted += byPlugin ? 1 : 0
      }
      // Both outcomes must occur, or the comparison proves nothing.
      assert.isAbove(accepted, 0)
      assert.isBelow(accepted, values.length)
    }

    it("repoPath: every string of '/', '.', 'a' up to 7 characters", () => {
      agree([...REPO, "repoPath"], strings("/.a", 7))
    })
    it("endpoint: structured and random candidates", () => {
      const structured = [
        "https://",
        "http://",
        "",
        "[::1]",
        "[fd00::1]:9000",
        "a",
        "a.b",
        "a:",
        "a:1",
        "a:12345",
        "a:123456",
      ]
        .flatMap((host) => ["", "/", "//", ":9000", ":"].map((tail) => host + tail))
        .flatMap((rest) => [rest, `https://${rest}`, `http://${rest}`])
      agree([...REPO, "endpoint"], [...structured, ...sample("ah:/.[]1-s@", 3000, 14, 1)])
    })
    it("sizes: every unit, and random candidates", () => {
      const units = [
        "",
        "B",
        "KB",
        "KiB",
        "MB",
        "MiB",
        "GB",
        "GiB",
        "TB",
        "TiB",
        "PB",
        "PiB",
        "kb",
        "XB",
        "iB",
      ]
      const structured = ["1", "10", "", " ", "-1"].flatMap((number) =>
        units.flatMap((unit) => [`${number}${unit}`, `${number} ${unit}`, `${number}  ${unit}`]),
      )
      agree([...CONFIG, "archive", "pushQueueMax"], [...structured, ...sample("1 GiBMK", 3000, 7, 2)])
    })
    /** Every C0 control and DEL, and characters beside them that are allowed (space, Latin-1, U+2028). */
    const controls = Array.from({ length: 0x20 }, (_, code) => String.fromCharCode(code)).join("")
    const aroundControls = `${controls}\u007f a~\u0080é\u2028`

    it("free-form strings: every string around the control characters (up to 2 in a bucket, else 1)", () => {
      const selector = { name: "s", key: "k" }
      // Every field that refuses control characters, in a Stanza where each of them is present.
      const base = withValue(minimalStanza(), [...CONFIG], {
        name: "main",
        s3Repositories: [
          {
            bucket: "b",
            endpoint: "s3.example.com",
            region: "r",
            repoPath: "/p",
            secretRef: { accessKeyId: selector, secretAccessKey: selector },
            cipherConfig: { encryptionPass: selector },
            endpointCA: selector,
          },
        ],
        posixRepositories: [{ repoPath: "/q", cipherConfig: { encryptionPass: selector } }],
        customEnvVar: { PGBACKREST_IO_TIMEOUT: "60" },
      })
      const selectors = [
        [...REPO, "secretRef", "accessKeyId"],
        [...REPO, "secretRef", "secretAccessKey"],
        [...REPO, "cipherConfig", "encryptionPass"],
        [...REPO, "endpointCA"],
        [...CONFIG, "posixRepositories", 0, "cipherConfig", "encryptionPass"],
      ]
      const fields: ReadonlyArray<ReadonlyArray<string | number>> = [
        [...REPO, "bucket"],
        [...REPO, "region"],
        [...CONFIG, "customEnvVar", "PGBACKREST_IO_TIMEOUT"],
        ...selectors.flatMap((at) => [
          [...at, "name"],
          [...at, "key"],
        ]),
      ]
      agree([...REPO, "bucket"], strings(aroundControls, 2), base)
      for (const field of fields) {
        agree(field, strings(aroundControls, 1), base)
      }
    })
    it("repoPath: every string of '/', '.', 'a', newline, NUL and DEL up to 5 characters", () => {
      agree([...REPO, "repoPath"], strings("/.a\n\u0000\u007f", 5))
      const posix = withValue(minimalStanza(), [...CONFIG, "posixRepositories"], [{ repoPath: "/q" }])
      agree([...CONFIG, "posixRepositories", 0, "repoPath"], strings("/.a\t\u001f", 4), posix)
    })
    it("stanza names: random candidates around the allowed characters and length", () => {
      const long = [62, 63, 64, 65].map((length) => "a".repeat(length))
      agree([...CONFIG, "name"], [...long, ...sample("aZ9_.-/ é", 3000, 6, 3)])
    })
  })
})
