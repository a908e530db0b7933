/**
 * The stores check their options' names as `CacheAside.make` does: a key that misspells an option
 * (`maxEntires`) is an `InvalidStoreOptions` naming the option it probably meant (ignored, the
 * option would silently keep its default); any other key (a field of a larger config spread in) is
 * logged once at WARN and ignored. Messages show key names, never values.
 */
import { assert, describe, it } from "@effect/vitest"
import { assertFalse, assertLeft } from "@effect/vitest/utils"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Schedule from "effect/Schedule"
import { CacheStore } from "../src/CacheStore.js"
import { MemoryCacheStore, Metrics, ResilientCacheStore } from "../src/index.js"

/** Log lines, captured with their level. */
const capture = () => {
  const lines: Array<string> = []
  const logger = Logger.make(({ logLevel, message }) => {
    lines.push(`${logLevel.label} ${Array.isArray(message) ? message.join(" ") : String(message)}`)
  })
  return {
    lines,
    warnings: () => lines.filter((line) => line.startsWith("WARN")),
    layer: Logger.replace(Logger.defaultLogger, logger)
  }
}

/** A secret in a value of a spread-in key: it must appear in no log line and no error. */
const secret = "pg-Pa55w0rd"
const appConfig = { enabled: true, databaseUrl: `postgres://app:${secret}@db:5432/app` }

describe("MemoryCacheStore option names", () => {
  const misspelled: ReadonlyArray<readonly [string, object, string]> = [
    ["a typo", { maxEntires: 10 }, "unknown option \"maxEntires\"; did you mean \"maxEntries\"?"],
    ["another case", { MaxBytes: 64 * 1024 }, "unknown option \"MaxBytes\"; did you mean \"maxBytes\"?"],
    ["next to a valid one", { maxEntries: 10, maxByte: 64 * 1024 }, "did you mean \"maxBytes\"?"]
  ]
  for (const [name, options, message] of misspelled) {
    it.effect(`${name}: InvalidStoreOptions naming the option meant`, () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(MemoryCacheStore.make(options as MemoryCacheStore.Options))
        assert.strictEqual(error._tag, "InvalidStoreOptions")
        assert.include(error.message, message)
      }))
  }

  it.scoped("the layer fails the same way", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Layer.build(MemoryCacheStore.layer({ maxentries: 5 } as MemoryCacheStore.Options))
      )
      assert.strictEqual(error._tag, "InvalidStoreOptions")
      assert.include(error.message, "unknown option \"maxentries\"; did you mean \"maxEntries\"?")
    }))

  it.effect("keys that misspell no option are logged once at WARN, by name only, and ignored", () =>
    Effect.gen(function*() {
      const logs = capture()
      const store = yield* MemoryCacheStore.make({ ...appConfig, maxEntries: 100 }).pipe(Effect.provide(logs.layer))
      yield* store.set("k", new Uint8Array([1]), Duration.minutes(1))
      const warnings = logs.warnings()
      assert.strictEqual(warnings.length, 1)
      assert.include(warnings[0]!, "MemoryCacheStore.make does not know, ignored: \"enabled\", \"databaseUrl\"")
      assert.notInclude(logs.lines.join("\n"), secret)
    }))

  it.effect("a long unknown key is clipped in the log line", () =>
    Effect.gen(function*() {
      const logs = capture()
      yield* MemoryCacheStore.make({ ["z".repeat(500)]: 1 } as MemoryCacheStore.Options).pipe(
        Effect.provide(logs.layer)
      )
      const warnings = logs.warnings()
      assert.strictEqual(warnings.length, 1)
      assert.include(warnings[0]!, `"${"z".repeat(64)}…"`)
      assert.notInclude(warnings[0]!, "z".repeat(65))
    }))

  it.effect("every option is accepted without a warning", () =>
    Effect.gen(function*() {
      const logs = capture()
      yield* MemoryCacheStore.make({ maxEntries: 10, maxBytes: 64 * 1024 }).pipe(Effect.provide(logs.layer))
      assert.strictEqual(logs.warnings().length, 0, logs.lines.join("\n"))
    }))
})

describe("ResilientCacheStore option names", () => {
  const misspelled: ReadonlyArray<readonly [string, object, string]> = [
    ["a typo", { failureTreshold: 3 }, "unknown option \"failureTreshold\"; did you mean \"failureThreshold\"?"],
    ["another case", { cooldownjitter: 0.1 }, "did you mean \"cooldownJitter\"?"],
    ["a swap", { overflowPatetrn: "cache:*" }, "did you mean \"overflowPattern\"?"],
    ["a retry", { writeRerty: false }, "did you mean \"writeRetry\"?"],
    ["the store's own timer", { storeEnforcesTimeut: true }, "did you mean \"storeEnforcesTimeout\"?"]
  ]
  for (const [name, options, message] of misspelled) {
    it.scoped(`${name}: InvalidStoreOptions naming the option meant`, () =>
      Effect.gen(function*() {
        const inner = yield* MemoryCacheStore.make()
        const result = yield* Effect.either(ResilientCacheStore.make(inner, options as ResilientCacheStore.Options))
        assertLeft(
          Either.mapLeft(result, (error) => error._tag),
          "InvalidStoreOptions"
        )
        assert.include(Either.isLeft(result) ? result.left.message : "", message)
      }).pipe(Effect.provide(Metrics.layer)))
  }

  it.scoped("the layer fails before its inner layer is built (a Redis layer would connect)", () =>
    Effect.gen(function*() {
      let built = 0
      const inner = Layer.effect(CacheStore, Effect.suspend(() => (built++, MemoryCacheStore.make())))
      const error = yield* Effect.flip(
        Layer.build(ResilientCacheStore.layer(inner, { timout: "1 second" } as ResilientCacheStore.Options))
      )
      assert.strictEqual(error._tag, "InvalidStoreOptions")
      assert.include(error.message, "unknown option \"timout\"; did you mean \"timeout\"?")
      assert.strictEqual(built, 0)
    }).pipe(Effect.provide(Metrics.layer)))

  it.scoped("keys that misspell no option are logged once at WARN, by name only, and ignored", () =>
    Effect.gen(function*() {
      const logs = capture()
      const layer = ResilientCacheStore.layer(MemoryCacheStore.layer(), { ...appConfig, name: "main", timeout: 50 })
      const context = yield* Layer.build(layer).pipe(Effect.provide(logs.layer))
      const store = Context.get(context, CacheStore)
      yield* store.set("k", new Uint8Array([1]), Duration.minutes(1))
      const warnings = logs.warnings()
      assert.strictEqual(warnings.length, 1)
      assert.include(warnings[0]!, "ResilientCacheStore.make does not know, ignored: \"enabled\", \"databaseUrl\"")
      assert.notInclude(logs.lines.join("\n"), secret)
    }).pipe(Effect.provide(Metrics.layer)))

  it.scoped("every option (a Schedule's own fields are not options) is accepted without a warning", () =>
    Effect.gen(function*() {
      const logs = capture()
      const inner = yield* MemoryCacheStore.make()
      const options: Required<ResilientCacheStore.Options> = {
        name: "all",
        timeout: "100 millis",
        storeEnforcesTimeout: false,
        deletePatternTimeout: "1 second",
        failureThreshold: 3,
        cooldown: "1 second",
        maxCooldown: "2 seconds",
        cooldownJitter: 0.1,
        readRetry: Schedule.recurs(1),
        writeRetry: ResilientCacheStore.defaultRetry,
        invalidationRetry: false,
        maxQueuedInvalidations: 10,
        maxQueuedInvalidationBytes: 1_000_000,
        replayInterval: "1 second",
        overflowPattern: "cache:*"
      }
      yield* ResilientCacheStore.make(inner, options).pipe(Effect.provide(logs.layer))
      assertFalse(logs.lines.some((line) => line.startsWith("WARN")), logs.lines.join("\n"))
    }).pipe(Effect.provide(Metrics.layer)))
})
