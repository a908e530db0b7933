import { CacheAside, CacheStore, MemoryCacheStore } from "@cache-aside/core"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, HashMap, Layer, Logger, Option, Schema, TestClock } from "effect"
import * as Util from "node:util"

// keys can be secrets (session tokens, e-mail addresses): by default they leave only as a short hash
const secret = "session:3f9c2b7e-SECRET-TOKEN"

const capture = (lines: Array<string>) =>
  Logger.replace(
    Logger.defaultLogger,
    Logger.make(({ annotations, cause, message }) => {
      lines.push(JSON.stringify({ message, annotations: HashMap.toEntries(annotations) }))
      lines.push(Util.inspect(cause, { depth: 10 }))
    })
  )

const make = (logKeys: boolean) =>
  CacheAside.make({
    namespace: "session",
    key: (id: string) => id,
    schema: Schema.String,
    lookup: (_: string) => Effect.as(Effect.sleep("10 seconds"), Option.some("v")),
    ttl: "1 minute",
    lookupTimeout: { hard: "1 second" },
    logKeys
  })

describe("keys in logs, spans and errors", () => {
  it.scoped("a LookupTimeout names the key by a short hash by default, in clear with logKeys", () =>
    Effect.gen(function*() {
      for (const logKeys of [false, true]) {
        const cache = yield* make(logKeys)
        const fiber = yield* Effect.fork(Effect.exit(cache.get(secret)))
        yield* TestClock.adjust(Duration.seconds(2))
        const exit = yield* Fiber.join(fiber)
        assert.isTrue(Exit.isFailure(exit))
        const error = Exit.isFailure(exit) ? JSON.stringify(exit.cause) + Util.inspect(exit.cause, { depth: 10 }) : ""
        if (logKeys) {
          assert.include(error, secret)
        } else {
          assert.notInclude(error, secret)
          assert.match(error, /#[0-9a-f]{12}/)
        }
      }
    }).pipe(Effect.provide(MemoryCacheStore.layer())))

  it.scoped("a corrupt entry's warning names the key by a short hash", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      yield* Effect.gen(function*() {
        const store = yield* CacheStore.CacheStore
        const cache = yield* CacheAside.make({
          namespace: "session",
          key: (id: string) => id,
          schema: Schema.String,
          lookup: (_: string) => Effect.succeed(Option.some("v")),
          ttl: "1 minute"
        })
        yield* store.set(cache.keyOf(secret), new TextEncoder().encode("{not json"), Duration.minutes(1))
        yield* cache.get(secret)
      }).pipe(Effect.provide(Layer.merge(MemoryCacheStore.layer(), capture(lines))))
      const all = lines.join("\n")
      assert.include(all, "corrupt cache entry")
      assert.notInclude(all, secret)
      assert.match(all, /#[0-9a-f]{12}/)
    }))
})
