import { CacheAside, MemoryCacheStore } from "@cache-aside/core"
import { Property } from "@cache-aside/core/testing"
import { RedisCacheStore } from "@cache-aside/redis"
import { assert, describe, it } from "@effect/vitest"
import { assertSome, deepStrictEqual } from "@effect/vitest/utils"
import { Effect, Either, Layer } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { appOver, Database, propertyOf, User, Users } from "./app.js"

const here = path.dirname(fileURLToPath(import.meta.url))
const packed = path.resolve(here, "../.tmp/packed")

describe("an outside project on the published packages", () => {
  it("resolves the packages to their packed dist, not to the workspace sources", async () => {
    const require = createRequire(path.join(packed, "app", "entry.js"))
    const core = fs.realpathSync(require.resolve("@cache-aside/core"))
    assert.strictEqual(core, path.join(packed, "node_modules/@cache-aside/core/dist/index.js"))
    // the modules the tests imported are the dist files themselves (loaded by Node, not transformed sources)
    const dist = await import(pathToFileURL(core).href)
    assert.strictEqual(dist.CacheAside, CacheAside)
    assert.strictEqual(dist.MemoryCacheStore, MemoryCacheStore)
    assert.isFunction(RedisCacheStore.layer)
  })

  it("type-checks against the published declarations", () => {
    const app = path.join(packed, "app")
    fs.mkdirSync(app, { recursive: true })
    fs.copyFileSync(path.join(here, "app.ts"), path.join(app, "app.ts"))
    fs.writeFileSync(
      path.join(app, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          strict: true,
          exactOptionalPropertyTypes: true,
          noEmit: true,
          skipLibCheck: true,
          types: []
        },
        files: ["app.ts"]
      })
    )
    const tsc = path.resolve(here, "../../../node_modules/.bin/tsc")
    execFileSync(tsc, ["-p", path.join(app, "tsconfig.json")], { encoding: "utf8" })
  })

  it.effect("a cache as a service, its data source swapped by Layer", () =>
    Effect.gen(function*() {
      const db = yield* Database.make<number, User>([[1, new User({ name: "Ada" })]])
      yield* Effect.gen(function*() {
        const users = yield* Users
        assertSome(yield* users.get(1), new User({ name: "Ada" }))
        assertSome(yield* users.get(1), new User({ name: "Ada" }))
        assert.strictEqual(db.loads(), 1, "the second get was a hit")
        yield* users.rename(1, "Grace")
        assertSome(yield* users.get(1), new User({ name: "Grace" }))
        assert.strictEqual(db.loads(), 2)
      }).pipe(Effect.provide(appOver(Users.layer, db).pipe(Layer.provide(MemoryCacheStore.layer()))))
    }))

  it.effect("the shipped property passes on the application as written", () =>
    Effect.gen(function*() {
      const report = yield* Property.check(propertyOf(Users.layer))
      assert.strictEqual(report.runs, 100)
    }))

  it.effect("the shipped property finds a planted missing invalidation, the same way every time", () =>
    Effect.gen(function*() {
      const first = yield* Effect.either(Property.check(propertyOf(Users.layerForgetful)))
      const again = yield* Effect.either(Property.check(propertyOf(Users.layerForgetful)))
      assert.isTrue(Either.isLeft(first) && Either.isLeft(again), "no counterexample found")
      if (Either.isLeft(first) && Either.isLeft(again)) {
        assert.include(first.left.violation, "stale")
        assert.isTrue(first.left.commands.some((command) => command.includes("write(")), first.left.message)
        deepStrictEqual(again.left.commands, first.left.commands)
      }
    }))
})
