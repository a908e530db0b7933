/**
 * Global setup of the consumer project: builds the packages, packs them as they would be published
 * (`pnpm pack` applies `publishConfig`), and unpacks the tarballs into `.tmp/packed/node_modules`, with
 * their dependencies linked to the workspace's copies, as an installer would lay them out. The
 * tests resolve `@cache-aside/*` from there (see vitest.config.ts): the built `dist`, never `src`.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, "../..")
const packed = path.join(here, ".tmp", "packed")
const packages = ["core", "redis"]

const run = (command: string, args: ReadonlyArray<string>, cwd: string) =>
  execFileSync(command, args, { cwd, stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" })

export default function setup(): void {
  run(path.join(root, "node_modules/.bin/tsc"), ["-b", "tsconfig.build.json"], root)
  fs.rmSync(packed, { recursive: true, force: true })
  // the importer the tests' `@cache-aside/*` imports are resolved from (see vitest.config.ts)
  fs.mkdirSync(path.join(packed, "app"), { recursive: true })
  fs.writeFileSync(path.join(packed, "app", "entry.js"), "export {}\n")
  const tarballs = path.join(packed, "tarballs")
  fs.mkdirSync(tarballs, { recursive: true })
  for (const name of packages) {
    const dir = path.join(root, "packages", name)
    run("npx", ["-y", "pnpm@10.34.9", "pack", "--pack-destination", tarballs], dir)
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")) as { version: string }
    const destination = path.join(packed, "node_modules/@cache-aside", name)
    fs.mkdirSync(destination, { recursive: true })
    run("tar", [
      "-xzf",
      path.join(tarballs, `cache-aside-${name}-${manifest.version}.tgz`),
      "-C",
      destination,
      "--strip-components=1"
    ], here)
    // what an installer adds next to it: its dependencies and peers, the workspace's resolved copies
    const published = JSON.parse(fs.readFileSync(path.join(destination, "package.json"), "utf8")) as {
      dependencies?: Record<string, string>
      peerDependencies?: Record<string, string>
    }
    for (const dependency of Object.keys({ ...published.dependencies, ...published.peerDependencies })) {
      const link = path.join(packed, "node_modules", dependency)
      if (dependency.startsWith("@cache-aside/") || fs.existsSync(link)) continue
      fs.mkdirSync(path.dirname(link), { recursive: true })
      fs.symlinkSync(fs.realpathSync(path.join(dir, "node_modules", dependency)), link)
    }
  }
}
