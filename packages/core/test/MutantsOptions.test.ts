/**
 * Survivors of `internal/options.ts` (see docs/mutation.md): the documented defaults of
 * `CacheAside.make`'s options, the edges of what is accepted (a poll as long as the wait, a TTL
 * plus its stale windows at the store's limit), the forms an option can take (`lock: true`,
 * `earlyExpiration: {}`, a `DataSource`), and that every refusal names the option it is about.
 */
import { assert, describe, it } from "@effect/vitest"
import { deepStrictEqual } from "@effect/vitest/utils"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type { Options } from "../src/CacheAside.js"
import * as DataSource from "../src/DataSource.js"
import * as options from "../src/internal/options.js"
import { maxTtlMillis } from "../src/internal/validate.js"

type Opts = Options<number, string, string, never, never>

const base: Opts = {
  namespace: "opts",
  key: (id: number) => String(id),
  schema: Schema.String,
  lookup: (id: number) => Effect.succeed(Option.some(`v${id}`)),
  ttl: "1 minute"
}

const decode = (extra: Partial<Opts> | Record<string, unknown> = {}) =>
  options.decode<number, string, string, never, never>({ ...base, ...extra } as Opts)

const config = (extra: Partial<Opts> | Record<string, unknown> = {}) => {
  const decoded = decode(extra)
  if (Either.isLeft(decoded)) assert.fail(`refused: ${decoded.left}`)
  return decoded.right
}

/** The refusal's message (the test fails if the options are accepted). */
const refusal = (extra: Partial<Opts> | Record<string, unknown>): string => {
  const decoded = decode(extra)
  if (Either.isRight(decoded)) assert.fail(`accepted: ${JSON.stringify(extra)}`)
  return decoded.left
}

describe("the documented defaults", () => {
  it("prefix cache, version 1, jitter 0.1, lease 10 s, lock 5 s / 20 ms, memo 1000 entries / 16 MiB, getMany 16, lookups 64", () => {
    const c = config()
    deepStrictEqual(
      {
        prefix: c.prefix,
        version: c.version,
        jitter: c.jitter,
        leaseTtl: Duration.toMillis(c.leaseTtl),
        lock: c.lock,
        swrMillis: c.swrMillis,
        beta: c.beta,
        failSafe: c.failSafe,
        decodeCache: c.decodeCache,
        batchConcurrency: c.batchConcurrency,
        lookupConcurrency: c.lookupConcurrency,
        compressAbove: c.compressAbove,
        spanEveryGet: c.spanEveryGet,
        keepMillis: c.keepMillis,
        negativeTtlMillis: c.negativeTtlMillis
      },
      {
        prefix: "cache",
        version: "1",
        jitter: 0.1,
        leaseTtl: 10_000,
        lock: { waitMillis: 5000, pollMillis: 20 },
        swrMillis: 0,
        beta: 0,
        failSafe: undefined,
        decodeCache: { entries: 1000, bytes: 16 * 1024 * 1024 },
        batchConcurrency: 16,
        lookupConcurrency: 64,
        compressAbove: undefined,
        spanEveryGet: false,
        keepMillis: 0,
        negativeTtlMillis: 60_000
      }
    )
    assert.isUndefined(c.softTimeout)
    assert.isUndefined(c.hardTimeout)
    assert.isUndefined(c.storeTimeout)
    assert.isUndefined(c.nearCache)
    assert.isUndefined(c.integrity)
    assert.isUndefined(c.loadMany)
    assert.notStrictEqual(c.keyLabel("secret"), "secret")
  })

  it("negativeTtl: the TTL, at most one minute; a minute for a TTL function; zero allowed", () => {
    assert.strictEqual(config({ ttl: "10 seconds" }).negativeTtlMillis, 10_000)
    assert.strictEqual(config({ ttl: "5 minutes" }).negativeTtlMillis, 60_000)
    assert.strictEqual(config({ ttl: () => "1 hour" }).negativeTtlMillis, 60_000)
    assert.strictEqual(config({ ttl: () => "1 second" }).negativeTtlMillis, 60_000)
    assert.strictEqual(config({ negativeTtl: 0 }).negativeTtlMillis, 0)
    assert.strictEqual(config({ negativeTtl: "3 seconds" }).negativeTtlMillis, 3000)
    assert.strictEqual(config({ ttl: () => "1 hour" }).ttl._tag, "Dynamic")
    deepStrictEqual(config({ ttl: "2 seconds" }).ttl, { _tag: "Static", millis: 2000 })
  })

  it("failSafe: throttle 10 s by default; entries kept for the longer of staleWhileRevalidate and maxStale", () => {
    deepStrictEqual(config({ failSafe: { maxStale: "1 minute" } }).failSafe, {
      maxStaleMillis: 60_000,
      throttleMillis: 10_000
    })
    assert.strictEqual(
      config({ failSafe: { maxStale: "1 minute" }, staleWhileRevalidate: "2 minutes" }).keepMillis,
      120_000
    )
    assert.strictEqual(
      config({ failSafe: { maxStale: "3 minutes" }, staleWhileRevalidate: "2 minutes" }).keepMillis,
      180_000
    )
    assert.strictEqual(config({ staleWhileRevalidate: "2 minutes" }).keepMillis, 120_000)
    assert.strictEqual(config({ failSafe: { maxStale: 0 } }).keepMillis, 0)
  })
})

describe("the forms of an option", () => {
  it("lock: false is off, true is the defaults, a short wait polls as often as it waits (at least every 1 ms)", () => {
    assert.isUndefined(config({ lock: false }).lock)
    deepStrictEqual(config({ lock: true }).lock, { waitMillis: 5000, pollMillis: 20 })
    deepStrictEqual(config({ lock: { wait: "5 millis" } }).lock, { waitMillis: 5, pollMillis: 5 })
    deepStrictEqual(config({ lock: { wait: 0 } }).lock, { waitMillis: 0, pollMillis: 1 })
    deepStrictEqual(config({ lock: { wait: "1 second", poll: "1 second" } }).lock, {
      waitMillis: 1000,
      pollMillis: 1000
    })
    deepStrictEqual(config({ lock: { wait: 0, poll: 1 } }).lock, { waitMillis: 0, pollMillis: 1 })
    assert.include(refusal({ lock: { wait: 0, poll: 2 } }), "lock.poll must not be longer than lock.wait")
    assert.include(refusal({ lock: { wait: "1 second", poll: 1001 } }), "lock.poll must not be longer than lock.wait")
    assert.match(refusal({ lock: { poll: 0 } }), /^lock\.poll /)
    assert.match(refusal({ lock: { wait: -1 } }), /^lock\.wait /)
  })

  it("earlyExpiration: true is beta 1, {} is beta 1, false is off, a beta as given", () => {
    assert.strictEqual(config({ earlyExpiration: true }).beta, 1)
    assert.strictEqual(config({ earlyExpiration: {} }).beta, 1)
    assert.strictEqual(config({ earlyExpiration: false }).beta, 0)
    assert.strictEqual(config({ earlyExpiration: { beta: 2.5 } }).beta, 2.5)
    assert.strictEqual(config({ earlyExpiration: { beta: 0 } }).beta, 0)
    assert.match(refusal({ earlyExpiration: { beta: Number.POSITIVE_INFINITY } }), /^earlyExpiration\.beta /)
  })

  it("compressAbove: false and 0 kept as given; a fraction refused", () => {
    assert.strictEqual(config({ compressAbove: false }).compressAbove, false)
    assert.strictEqual(config({ compressAbove: 0 }).compressAbove, 0)
    assert.match(refusal({ compressAbove: 1.5 }), /^compressAbove /)
  })

  it("the lowest accepted bounds: timeouts of 1 ms, a memo of 0, one lookup at a time", () => {
    const c = config({
      lookupTimeout: { soft: 1, hard: 2 }, // a soft timeout must be shorter than the hard one
      storeTimeout: 1,
      leaseTtl: 1,
      decodeCacheSize: 0,
      decodeCacheBytes: 0,
      getManyConcurrency: 1,
      lookupConcurrency: 1,
      failSafe: { maxStale: 0, throttle: 1 }
    })
    assert.strictEqual(Duration.toMillis(c.softTimeout!), 1)
    assert.strictEqual(Duration.toMillis(config({ lookupTimeout: { hard: 1 } }).hardTimeout!), 1)
    assert.strictEqual(Duration.toMillis(c.storeTimeout!), 1)
    deepStrictEqual(c.decodeCache, { entries: 0, bytes: 0 })
    assert.strictEqual(c.batchConcurrency, 1)
    assert.strictEqual(c.lookupConcurrency, 1)
  })

  it("a lookup function, or a DataSource whose loadMany is kept", () => {
    const load = (id: number) => Effect.succeed(Option.some(`v${id}`))
    const plain = config({ lookup: load })
    assert.strictEqual(plain.load, load)
    assert.isUndefined(plain.loadMany)
    const source = DataSource.make(
      load,
      (ids: ReadonlyArray<number>) => Effect.succeed(ids.map((id) => [id, Option.some(`v${id}`)] as const))
    )
    const batched = config({ lookup: source })
    assert.strictEqual(batched.load, source.load)
    assert.strictEqual(batched.loadMany, source.loadMany)
    const single = config({ lookup: { load } })
    assert.strictEqual(single.load, load)
    assert.isUndefined(single.loadMany)
  })

  it("spanEveryGet only when true; logKeys shows keys in clear only when true", () => {
    assert.strictEqual(config({ spanEveryGet: true }).spanEveryGet, true)
    assert.strictEqual(config({ spanEveryGet: "yes" }).spanEveryGet, false)
    assert.strictEqual(config({ logKeys: true }).keyLabel("secret"), "secret")
    assert.notStrictEqual(config({ logKeys: "yes" }).keyLabel("secret"), "secret")
  })

  it("nearCache false is off; options turn it on", () => {
    assert.isUndefined(config({ nearCache: false }).nearCache)
    assert.isDefined(config({ nearCache: { maxEntries: 10, ttl: "1 second" } }).nearCache)
  })

  it("a signing key turns integrity on; previous keys are accepted beside it", () => {
    const key = Redacted.make("0123456789abcdef0123456789abcdef")
    const old = Redacted.make("fedcba9876543210fedcba9876543210")
    assert.isDefined(config({ signingKey: key }).integrity)
    const rotated = config({ signingKey: key, previousSigningKeys: [old] }).integrity!
    const signedByOld = config({ signingKey: old }).integrity!.sign("k", Buffer.from("{}"))
    assert.isTrue(Either.isRight(rotated.verify("k", signedByOld)))
    assert.isTrue(Either.isLeft(config({ signingKey: key }).integrity!.verify("k", signedByOld)))
    assert.isDefined(config({ signingKey: key, previousSigningKeys: [] }).integrity)
  })
})

describe("what is refused, and the message names the option", () => {
  it("names: empty, ':', any control character, DEL, or not a string", () => {
    for (const bad of ["", "a:b", "a\u0000", "a\u001f", "a\u007f", "\n"]) {
      assert.match(
        refusal({ namespace: bad }),
        /^namespace must be non-empty well-formed text, without ":" or control characters, got /
      )
    }
    assert.match(refusal({ namespace: ["user"] }), /^namespace /)
    assert.match(refusal({ namespace: 7 }), /^namespace /)
    assert.match(refusal({ prefix: "a\u007f" }), /^prefix /)
    assert.match(refusal({ version: "" }), /^version /)
    assert.match(refusal({ version: "v:2" }), /^version /)
    // a lone surrogate is U+FFFD's bytes in Redis: "t\uD800" and "t\uFFFD" would share keys
    assert.match(refusal({ namespace: "tenant\uD800" }), /^namespace must be non-empty well-formed text/)
    assert.match(refusal({ namespace: "\uDFFFtenant" }), /^namespace /)
    assert.match(refusal({ prefix: "c\uD811" }), /^prefix /)
    assert.match(refusal({ version: "\uDBFF" }), /^version /)
    for (const good of ["user", "a b", "é", "v-2.1_x", "\u0080", " ", "\uFFFD", "😀", "\uD83D\uDE00"]) {
      assert.strictEqual(config({ namespace: good, version: good, prefix: good }).namespace, good)
    }
  })

  it("key and lookup must be functions (or a DataSource)", () => {
    assert.strictEqual(refusal({ key: "id" }), "key must be a function")
    assert.strictEqual(refusal({ lookup: null }), "lookup must be a function or a DataSource")
    assert.strictEqual(refusal({ lookup: {} }), "lookup must be a function or a DataSource")
    assert.strictEqual(refusal({ lookup: { load: "users" } }), "lookup must be a function or a DataSource")
  })

  it("each duration and number names its option", () => {
    const cases: ReadonlyArray<readonly [string, Record<string, unknown>]> = [
      ["ttl", { ttl: 0 }],
      ["negativeTtl", { negativeTtl: -1 }],
      ["jitter", { jitter: 1.5 }],
      ["leaseTtl", { leaseTtl: 0 }],
      ["staleWhileRevalidate", { staleWhileRevalidate: -1 }],
      ["failSafe.maxStale", { failSafe: { maxStale: -1 } }],
      ["failSafe.throttle", { failSafe: { maxStale: "1 minute", throttle: 0 } }],
      ["lookupTimeout.soft", { lookupTimeout: { soft: 0 } }],
      ["lookupTimeout.hard", { lookupTimeout: { hard: 0 } }],
      ["storeTimeout", { storeTimeout: 0 }],
      ["decodeCacheSize", { decodeCacheSize: -1 }],
      ["decodeCacheBytes", { decodeCacheBytes: 0.5 }],
      ["getManyConcurrency", { getManyConcurrency: 0 }],
      ["lookupConcurrency", { lookupConcurrency: 0 }],
      ["maxEntryBytes", { maxEntryBytes: -1 }]
    ]
    for (const [what, extra] of cases) {
      assert.isTrue(refusal(extra).startsWith(`${what} `), `${what}: ${refusal(extra)}`)
    }
  })

  it("signing keys: previous keys need a signing key and must be an array", () => {
    const key = Redacted.make("0123456789abcdef0123456789abcdef")
    assert.strictEqual(refusal({ previousSigningKeys: [key] }), "previousSigningKeys needs a signingKey")
    assert.strictEqual(refusal({ signingKey: key, previousSigningKeys: key }), "previousSigningKeys must be an array")
    assert.match(refusal({ signingKey: Redacted.make("short") }), /^signingKey /)
    assert.match(refusal({ signingKey: key, previousSigningKeys: [Redacted.make("short")] }), /^previousSigningKeys /)
  })

  it("a TTL plus its stale windows may reach the store's limit, not pass it", () => {
    const ttl = maxTtlMillis - 1000
    assert.strictEqual(config({ ttl, staleWhileRevalidate: 1000 }).keepMillis, 1000)
    assert.strictEqual(config({ ttl, failSafe: { maxStale: 1000 } }).keepMillis, 1000)
    const tooLong = "ttl plus the stale windows (staleWhileRevalidate, failSafe.maxStale) is too long"
    assert.strictEqual(refusal({ ttl, staleWhileRevalidate: 1001 }), tooLong)
    assert.strictEqual(refusal({ ttl, failSafe: { maxStale: 1001 } }), tooLong)
    // a TTL function's values are checked one by one, when they are cached
    assert.strictEqual(config({ ttl: () => 1, staleWhileRevalidate: maxTtlMillis }).keepMillis, maxTtlMillis)
  })
})
