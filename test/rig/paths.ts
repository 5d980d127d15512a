import * as fs from "node:fs"
import * as path from "node:path"

/**
 * The repository root, found from this module's location: the rig runs from test/rig/ under vitest and
 * from dist/ when bundled into the local run.
 */
export const PROJECT_ROOT = ((): string => {
  let dir = import.meta.dirname
  while (!fs.existsSync(path.join(dir, "package.json")) || !fs.existsSync(path.join(dir, "examples"))) {
    const parent = path.dirname(dir)
    if (parent === dir) {
      throw new Error(`no project root above ${import.meta.dirname}`)
    }
    dir = parent
  }
  return dir
})()
