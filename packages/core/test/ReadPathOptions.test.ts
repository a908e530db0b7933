import { assert, describe, it } from "@effect/vitest"
import { assertNone, assertSome, assertTrue } from "@effect/vitest/utils"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { CacheAside, DataSource, MemoryCacheStore, Metrics } from "../src/index.js"
import { DecodeMemo } from "../src/internal/entry.js"

const Services = Layer.provideMerge(MemoryCacheStore.layer(), Metrics.layer)

const base = {
  namespace: "opts",
  key: (id: number) => String(id),
  schema: Schema.String,
  lookup: (id: number) => Effect.succeed(Option.some(`v${id}`)),
  ttl: "1 minute"
} as const

/** Log lines at `level` or above, captured. */
const capture = () => {
  const lines: Array<string> = []
  const logger = Logger.make(({ logLevel, message }) => {
    lines.push(`${logLevel.label} ${Array.isArray(message) ? message.join(" ") : String(message)}`)
  })
  return { lines, layer: Logger.replace(Logger.defaultLogger, logger) }
}

describe("options of make (issue 9 item 5)", () => {
  const bad: ReadonlyArray<readonly [string, Partial<CacheAside.Options<number, string, string, never, never>>]> = [
    ["ttl Infinity", { ttl: Duration.infinity }],
    ["ttl NaN", { ttl: Number.NaN }],
    ["ttl beyond Redis's PX range", { ttl: 1e20 }],
    ["ttl zero", { ttl: 0 }],
    ["ttl negative", { ttl: "-5 seconds" }],
    ["negativeTtl Infinity", { negativeTtl: Duration.infinity }],
    ["leaseTtl Infinity", { leaseTtl: Duration.infinity }],
    ["leaseTtl zero", { leaseTtl: 0 }],
    ["staleWhileRevalidate Infinity", { staleWhileRevalidate: Duration.infinity }],
    ["failSafe.maxStale Infinity", { failSafe: { maxStale: Duration.infinity } }],
    ["failSafe.throttle zero", { failSafe: { maxStale: "1 minute", throttle: 0 } }],
    ["storeTimeout zero", { storeTimeout: 0 }],
    ["lock.poll Infinity", { lock: { poll: Duration.infinity } }],
    ["lock.poll longer than lock.wait", { lock: { wait: "100 millis", poll: "1 second" } }],
    ["lock.wait NaN", { lock: { wait: Number.NaN } }],
    ["lookupTimeout.hard zero", { lookupTimeout: { hard: 0 } }],
    ["jitter 2", { jitter: 2 }],
    ["jitter NaN", { jitter: Number.NaN }],
    ["earlyExpiration.beta -1", { earlyExpiration: { beta: -1 } }],
    ["decodeCacheSize 1.5", { decodeCacheSize: 1.5 }],
    ["decodeCacheBytes -1", { decodeCacheBytes: -1 }],
    ["getManyConcurrency 0", { getManyConcurrency: 0 }],
    ["compressAbove -1", { compressAbove: -1 }],
    ["an empty namespace", { namespace: "" }],
    ["a namespace with ':'", { namespace: "a:b" }],
    ["a prefix with ':' (two caches' keys would overlap)", { prefix: "app:user" }],
    ["a prefix with a control character", { prefix: "app\u0000" }],
    ["an empty prefix", { prefix: "" }],
    ["a version with ':'", { version: "1:2" }]
  ]
  for (const [name, options] of bad) {
    it.scoped(`${name} is a typed InvalidOptions, never a defect`, () =>
      Effect.gen(function*() {
        const result = yield* Effect.either(CacheAside.make({ ...base, ...options }))
        assertTrue(Either.isLeft(result) && result.left._tag === "InvalidOptions", name)
      }).pipe(Effect.provide(Services)))
  }

  // what a JavaScript caller (or a cast that skips the types) can pass: each read of a field of `null` was a
  // TypeError, a defect, before the object-shaped options were checked
  const wrongTypes: ReadonlyArray<readonly [string, Record<string, unknown>, string]> = [
    ["failSafe null", { failSafe: null }, "failSafe must be an object, got null"],
    ["failSafe a string", { failSafe: "1 minute" }, "failSafe must be an object, got string"],
    ["earlyExpiration null", { earlyExpiration: null }, "earlyExpiration must be an object, got null"],
    ["earlyExpiration a string", { earlyExpiration: "yes" }, "earlyExpiration must be an object, got string"],
    ["nearCache null", { nearCache: null }, "nearCache must be an object, got null"],
    ["nearCache true", { nearCache: true }, "nearCache must be an object, got boolean"],
    ["nearCache an array", { nearCache: [] }, "nearCache must be an object, got an array"],
    ["lock null", { lock: null }, "lock must be an object, got null"],
    ["lock a string", { lock: "5 seconds" }, "lock must be an object, got string"],
    ["lookupTimeout null", { lookupTimeout: null }, "lookupTimeout must be an object, got null"],
    ["lookupTimeout a number", { lookupTimeout: 100 }, "lookupTimeout must be an object, got number"],
    ["schema undefined", { schema: undefined }, "schema must be a Schema"],
    ["schema a plain object", { schema: { ast: {} } }, "schema must be a Schema"],
    ["key a string", { key: "id" }, "key must be a function"],
    ["a DataSource whose loadMany is not a function", {
      lookup: DataSource.make((id: number) => Effect.succeed(Option.some(`v${id}`)), "batch" as never)
    }, "loadMany must be a function"],
    [
      "getManyConcurrency beyond a safe integer",
      { getManyConcurrency: 2 ** 60 },
      "getManyConcurrency must be an integer"
    ],
    ["getManyConcurrency a string", { getManyConcurrency: "16" }, "got \"16\""],
    // a misspelled option would leave its feature off without a word
    ["a misspelled option (case)", { negativeTTL: 0 }, "unknown option \"negativeTTL\"; did you mean \"negativeTtl\"?"],
    [
      "a misspelled option (a typo)",
      { stalewhileRevalidat: "1 minute" },
      "unknown option \"stalewhileRevalidat\"; did you mean \"staleWhileRevalidate\"?"
    ],
    [
      "a misspelled lock option",
      { lock: { wiat: "1 second" } },
      "unknown option \"lock.wiat\"; did you mean \"lock.wait\"?"
    ],
    [
      "a misspelled failSafe option",
      { failSafe: { maxStale: "1 minute", maxstale: "1 hour" } },
      "unknown option \"failSafe.maxstale\""
    ],
    [
      "a misspelled lookupTimeout option",
      { lookupTimeout: { hrad: "1 second" } },
      "did you mean \"lookupTimeout.hard\"?"
    ],
    ["a misspelled earlyExpiration option", { earlyExpiration: { Beta: 2 } }, "did you mean \"earlyExpiration.beta\"?"],
    [
      "a misspelled nearCache option",
      { nearCache: { maxEntries: 10, ttl: "1 minute", maxEntrys: 5 } },
      "unknown option \"nearCache.maxEntrys\""
    ],
    [
      "lookupTimeout.soft not shorter than hard (the soft one could never fire)",
      { lookupTimeout: { soft: "2 seconds", hard: "1 second" } },
      "lookupTimeout.soft must be shorter than lookupTimeout.hard"
    ]
  ]
  for (const [name, options, message] of wrongTypes) {
    it.scoped(`${name} is a typed InvalidOptions naming the option, never a defect`, () =>
      Effect.gen(function*() {
        const result = yield* Effect.either(CacheAside.make({ ...base, ...options } as typeof base))
        assertTrue(Either.isLeft(result) && result.left._tag === "InvalidOptions", name)
        assert.include(Either.isLeft(result) ? result.left.message : "", message)
      }).pipe(Effect.provide(Services)))
  }

  it.scoped("options that are not an object: InvalidOptions naming what was given", () =>
    Effect.gen(function*() {
      for (const options of [undefined, null, 5, "cache"]) {
        const result = yield* Effect.either(CacheAside.make(options as unknown as typeof base))
        assertTrue(Either.isLeft(result) && result.left._tag === "InvalidOptions")
        assert.match(Either.isLeft(result) ? result.left.message : "", /^options must be an object, got /)
      }
    }).pipe(Effect.provide(Services)))

  it.scoped("keys that misspell no option (a larger config spread in, a class's own field) are logged, not refused", () =>
    Effect.gen(function*() {
      const logs = capture()
      const appConfig = { enabled: true, description: "users" }
      const lockConfig = { wait: "1 second" as const, label: "x" }
      class Opts {
        readonly namespace = "opts-class"
        readonly ttl = "1 minute"
        readonly schema = Schema.String
        readonly key = (id: number) => String(id)
        readonly lookup = (id: number) => Effect.succeed(Option.some(`v${id}`))
        readonly createdAt = 0
      }
      const spread = yield* Effect.either(
        CacheAside.make({ ...base, ...appConfig, lock: lockConfig }).pipe(
          Effect.provide(logs.layer)
        )
      )
      assertTrue(Either.isRight(spread), Either.isLeft(spread) ? spread.left.message : "")
      const instance = yield* Effect.either(CacheAside.make(new Opts()).pipe(Effect.provide(logs.layer)))
      assertTrue(Either.isRight(instance), Either.isLeft(instance) ? instance.left.message : "")
      const warnings = logs.lines.filter((line) => line.startsWith("WARN"))
      assert.strictEqual(warnings.length, 2)
      assert.include(warnings[0]!, "\"enabled\", \"description\", \"lock.label\"")
      assert.include(warnings[1]!, "\"createdAt\"")
    }).pipe(Effect.provide(Services)))

  it.scoped("every option, each object-valued one with every field, is accepted", () =>
    Effect.gen(function*() {
      const result = yield* Effect.either(CacheAside.make({
        ...base,
        negativeTtl: "1 second",
        jitter: 0.2,
        version: "2",
        prefix: "app",
        compressAbove: 4096,
        maxEntryBytes: 1024 * 1024,
        leaseTtl: "5 seconds",
        lock: { wait: "1 second", poll: "10 millis" },
        staleWhileRevalidate: "1 minute",
        earlyExpiration: { beta: 1 },
        failSafe: { maxStale: "1 hour", throttle: "5 seconds" },
        lookupTimeout: { soft: "100 millis", hard: "1 second" },
        spanEveryGet: false,
        logKeys: false,
        storeTimeout: "1 second",
        decodeCacheSize: 10,
        decodeCacheBytes: 1024,
        getManyConcurrency: 4,
        nearCache: { maxEntries: 10, maxBytes: 4096, ttl: "1 minute" },
        lookupConcurrency: 8,
        signingKey: Redacted.make("k".repeat(32)),
        previousSigningKeys: [Redacted.make("p".repeat(32))]
      }))
      assertTrue(Either.isRight(result), Either.isLeft(result) ? result.left.message : "")
    }).pipe(Effect.provide(Services)))

  it.scoped("a key function (or pattern) that gives no string: a defect saying so, never one entry shared by every object", () =>
    Effect.gen(function*() {
      let loads = 0
      const cache = yield* CacheAside.make({
        ...base,
        key: (id: unknown) => id as string, // a JavaScript caller's key function
        lookup: (id: unknown) => Effect.sync(() => (loads++, Option.some(`v${JSON.stringify(id)}`)))
      })
      for (const key of [{ id: 1 }, { id: 2 }, 7, undefined, null, ["a"]]) {
        const exit = yield* Effect.exit(cache.get(key))
        assertTrue(Exit.isFailure(exit) && Cause.isDie(exit.cause), JSON.stringify(key))
        assert.include(String(Cause.squash(Exit.isFailure(exit) ? exit.cause : Cause.empty)), "must give a string")
        assertTrue(Exit.isFailure(yield* Effect.exit(cache.getMany([key]))))
      }
      assert.strictEqual(loads, 0)
      const pattern = yield* Effect.exit(cache.invalidatePattern(42 as unknown as string))
      assertTrue(Exit.isFailure(pattern) && Cause.isDie(pattern.cause))
      assertSome(yield* cache.get("ok"), "v\"ok\"")
    }).pipe(Effect.provide(Services)))

  it.scoped("a short lock.wait alone is valid: the default poll follows it", () =>
    Effect.gen(function*() {
      const result = yield* Effect.either(CacheAside.make({ ...base, lock: { wait: "5 millis" } }))
      assertTrue(Either.isRight(result))
    }).pipe(Effect.provide(Services)))

  it.scoped("the defaults make a working cache, and Metrics is optional", () =>
    Effect.gen(function*() {
      const cache = yield* CacheAside.make(base)
      assertSome(yield* cache.get(1), "v1")
      assertSome(yield* cache.get(1), "v1")
    }).pipe(Effect.provide(MemoryCacheStore.layer())))

  it.scoped("a ttl function giving NaN or Infinity: not cached, counted, logged once", () => {
    const logs = capture()
    return Effect.gen(function*() {
      let loads = 0
      const cache = yield* CacheAside.make({
        ...base,
        lookup: (id: number) => Effect.sync(() => (loads++, Option.some(`v${id}`))),
        ttl: (value: string) => value === "v1" ? Number.NaN : Duration.infinity
      })
      for (let i = 0; i < 3; i++) {
        assertSome(yield* cache.get(1), "v1")
        assertSome(yield* cache.get(2), "v2")
      }
      assert.strictEqual(loads, 6, "nothing was cached")
      const metrics = yield* Metrics.Metrics
      assert.strictEqual((yield* metrics.snapshot("opts")).ttlErrors, 6)
      assert.strictEqual(logs.lines.filter((line) => line.includes("ttl function")).length, 1)
    }).pipe(Effect.provide(Services), Effect.provide(logs.layer))
  })
})

describe("the decode memo (defect 10)", () => {
  const stored = (n: number) => ({ _tag: "NotFound", expiresAt: n, delta: 0 }) as const
  const bytes = (size: number, fill = 1) => new Uint8Array(size).fill(fill)

  it("evicts the least recently used key, not the oldest", () => {
    const memo = new DecodeMemo<never>(2, 1 << 20)
    const a = bytes(4, 1)
    const b = bytes(4, 2)
    memo.set("a", a, stored(1))
    memo.set("b", b, stored(2))
    assert.isDefined(memo.get("a", a)) // a is now the most recently used
    memo.set("c", bytes(4, 3), stored(3))
    assert.isDefined(memo.get("a", a))
    assert.isUndefined(memo.get("b", b))
  })

  it("is bounded in bytes and never keeps an entry above an eighth of its budget", () => {
    const memo = new DecodeMemo<never>(1000, 800)
    const big = bytes(200)
    memo.set("big", big, stored(1))
    assert.isUndefined(memo.get("big", big))
    for (let i = 0; i < 20; i++) memo.set(`k${i}`, bytes(90, i), stored(i))
    assert.isAtMost(memo.size, 8)
  })

  it("answers only for the very bytes it decoded", () => {
    const memo = new DecodeMemo<never>(10, 1 << 20)
    memo.set("k", bytes(4, 1), stored(1))
    assert.isDefined(memo.get("k", bytes(4, 1)))
    assert.isUndefined(memo.get("k", bytes(4, 2)))
  })
})

describe("getOption", () => {
  it.scoped("a cached not-found is Some(None); nothing cached is None", () =>
    Effect.gen(function*() {
      const cache = yield* CacheAside.make({ ...base, lookup: () => Effect.succeed(Option.none<string>()) })
      assertNone(yield* cache.getOption(1))
      assertNone(yield* cache.get(1))
      assertSome(yield* cache.getOption(1), Option.none())
    }).pipe(Effect.provide(Services)))
})
