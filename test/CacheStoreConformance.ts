/**
 * The `CacheStore` conformance suite: every store (memory, Redis, ...) must pass it. Run it once per
 * implementation with `suite(name, layer)`.
 *
 * Time: TTL tests sleep on real time (for Redis) and move the `TestClock` by the same amount (for
 * stores reading Effect's `Clock`). The layer is built once per suite by `it.layer`, with the same
 * `TestClock` the tests adjust.
 *
 * Keys: each test uses a random prefix, so stores that share a server between tests stay isolated.
 */
import { CacheStore, maxPatternBytes } from "@cache-aside/core/CacheStore"
import * as Glob from "@cache-aside/core/Glob"
import { assert, describe, it } from "@effect/vitest"
import { deepStrictEqual } from "@effect/vitest/utils"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import * as TestServices from "effect/TestServices"
import { randomUUID } from "node:crypto"

const bytes = (...values: ReadonlyArray<number>): Uint8Array => Uint8Array.from(values)
const text = (value: string): Uint8Array => new TextEncoder().encode(value)

/** A random key prefix, unique per test. */
const prefix = (): string => `conformance:${randomUUID()}:`

/**
 * A short TTL that is read back before it ends. Redis expires it in real time, and a loaded
 * machine can stall longer than that between two commands: the write and its read-back run in
 * `beforeShortTtl`, which only accepts a run that provably read before the entry could expire.
 */
const shortTtl = Duration.millis(500)
/** Long enough past `shortTtl` for Redis to have expired the key. */
const pastShortTtl = Duration.millis(700)

/** Runs of `beforeShortTtl` before it gives up and hands back a slow run's result. */
const shortTtlAttempts = 20

/**
 * Runs `attempt` (a write with `shortTtl`, on fresh keys, and its read-back) until one run took
 * less than `shortTtl` of real time from before its first command to after its last: everything
 * it read was then read before the entry could expire (Redis's clock and ours are one machine's),
 * whatever the load. A slower run is thrown away, not asserted on: an entry it read as gone may
 * have expired in a stall. Returns the accepted run's result; the test asserts on it unchanged.
 */
const beforeShortTtl = <A, E, R>(attempt: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.gen(function*() {
    const liveNow = Clock.currentTimeMillis.pipe(TestServices.provideLive)
    for (let i = 1;; i++) {
      const started = yield* liveNow
      const result = yield* attempt
      if ((yield* liveNow) - started < Duration.toMillis(shortTtl) || i >= shortTtlAttempts) return result
    }
  })

/** Lets `duration` pass on both the real clock and the `TestClock`. */
const elapse = (duration: Duration.DurationInput): Effect.Effect<void> =>
  Effect.zipRight(Effect.sleep(duration).pipe(TestServices.provideLive), TestClock.adjust(duration))

const assertBytes = (actual: Option.Option<Uint8Array>, expected: Uint8Array): void => {
  assert.isTrue(Option.isSome(actual), "expected a value, got None")
  const value = Option.getOrThrow(actual)
  assert.instanceOf(value, Uint8Array)
  deepStrictEqual(Array.from(value), Array.from(expected))
}

const assertNone = (actual: Option.Option<Uint8Array>): void => {
  assert.isTrue(Option.isNone(actual), "expected None, got a value")
}

const long = Duration.minutes(5)

/** Every byte value, gzip magic, invalid UTF-8, NUL bytes. */
const binaryValues: ReadonlyArray<readonly [string, Uint8Array]> = [
  ["empty", bytes()],
  ["all byte values", Uint8Array.from({ length: 256 }, (_, i) => i)],
  ["NUL bytes", bytes(0, 0, 0, 1, 0)],
  ["gzip magic", bytes(0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe)],
  ["invalid UTF-8", bytes(0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1, 0xf0, 0x28, 0x8c, 0xbc, 0xff)],
  ["large", Uint8Array.from({ length: 256 * 1024 }, (_, i) => (i * 31 + 7) & 0xff)]
]

/**
 * Runs the conformance suite against a store layer.
 *
 * @example
 * ```ts
 * suite("MemoryCacheStore", MemoryCacheStore.layer())
 * ```
 */
export const suite = (name: string, layer: Layer.Layer<CacheStore, unknown>): void =>
  it.layer(layer, { timeout: "30 seconds" })(name, (it) => {
    it.effect("get of a missing key is None", () =>
      Effect.gen(function*() {
        const store = yield* CacheStore
        assertNone(yield* store.get(`${prefix()}missing`))
      }))

    it.effect("set then get round-trips arbitrary bytes", () =>
      Effect.gen(function*() {
        const store = yield* CacheStore
        const p = prefix()
        for (const [label, value] of binaryValues) {
          yield* store.set(`${p}${label}`, value, long)
        }
        for (const [label, value] of binaryValues) {
          assertBytes(yield* store.get(`${p}${label}`), value)
        }
      }))

    it.effect("keys are arbitrary strings", () =>
      Effect.gen(function*() {
        const store = yield* CacheStore
        const p = prefix()
        const keys = [`${p}`, `${p} spaced key `, `${p}ключ:🔑`, `${p}a\nb\r\nc`, `${p}*?[]\\`]
        yield* Effect.forEach(keys, (key, i) => store.set(key, bytes(i), long))
        for (const [i, key] of keys.entries()) {
          assertBytes(yield* store.get(key), bytes(i))
        }
      }))

    it.effect("getMany is aligned with the keys: present, absent, duplicates", () =>
      Effect.gen(function*() {
        const store = yield* CacheStore
        const p = prefix()
        yield* store.set(`${p}a`, text("A"), long)
        yield* store.set(`${p}b`, text("B"), long)
        const result = yield* store.getMany([`${p}a`, `${p}missing`, `${p}b`, `${p}a`, `${p}other`])
        assert.strictEqual(result.length, 5)
        assertBytes(result[0]!, text("A"))
        assertNone(result[1]!)
        assertBytes(result[2]!, text("B"))
        assertBytes(result[3]!, text("A"))
        assertNone(result[4]!)
      }))

    it.effect("getMany of no keys is empty", () =>
      Effect.gen(function*() {
        const store = yield* CacheStore
        deepStrictEqual(yield* store.getMany([]), [])
      }))

    it.effect("getMany of only absent keys", () =>
      Effect.gen(function*() {
        const store = yield* CacheStore
        const p = prefix()
        const result = yield* store.getMany([`${p}x`, `${p}y`])
        assert.strictEqual(result.length, 2)
        result.forEach(assertNone)
      }))

    it.effect("set overwrites the value and the TTL", () =>
      Effect.gen(function*() {
        const store = yield* CacheStore
        const key = `${prefix()}k`
        yield* store.set(key, text("first"), Duration.millis(50))
        yield* store.set(key, text("second"), long)
        assertBytes(yield* store.get(key), text("second"))
        yield* elapse("120 millis")
        assertBytes(yield* store.get(key), text("second"))
      }))

    it.effect("entries expire after their TTL", () =>
      Effect.gen(function*() {
        const store = yield* CacheStore
        const { p, short } = yield* beforeShortTtl(Effect.gen(function*() {
          const p = prefix()
          yield* store.set(`${p}short`, text("short"), shortTtl)
          yield* store.set(`${p}long`, text("long"), long)
          return { p, short: yield* store.get(`${p}short`) }
        }))
        assertBytes(short, text("short"))
        yield* elapse(pastShortTtl)
        assertNone(yield* store.get(`${p}short`))
        const many = yield* store.getMany([`${p}short`, `${p}long`])
        assertNone(many[0]!)
        assertBytes(many[1]!, text("long"))
      }))

    it.effect("a TTL under one millisecond is rounded up, not rejected", () =>
      Effect.gen(function*() {
        const store = yield* CacheStore
        const p = prefix()
        yield* store.set(`${p}zero`, text("v"), Duration.zero)
        yield* store.set(`${p}fraction`, text("v"), Duration.micros(300n))
        yield* elapse("50 millis")
        assertNone(yield* store.get(`${p}zero`))
        assertNone(yield* store.get(`${p}fraction`))
      }))

    it.effect("delete returns how many keys existed and ignores missing ones", () =>
      Effect.gen(function*() {
        const store = yield* CacheStore
        const p = prefix()
        yield* store.set(`${p}a`, text("A"), long)
        yield* store.set(`${p}b`, text("B"), long)
        yield* store.set(`${p}c`, text("C"), long)
        assert.strictEqual(yield* store.delete([`${p}a`, `${p}b`, `${p}missing`]), 2)
        assertNone(yield* store.get(`${p}a`))
        assertNone(yield* store.get(`${p}b`))
        assertBytes(yield* store.get(`${p}c`), text("C"))
        assert.strictEqual(yield* store.delete([`${p}a`]), 0)
      }))

    it.effect("delete of no keys is 0", () =>
      Effect.gen(function*() {
        const store = yield* CacheStore
        assert.strictEqual(yield* store.delete([]), 0)
      }))

    it.effect("delete does not count expired entries", () =>
      Effect.gen(function*() {
        const store = yield* CacheStore
        const p = prefix()
        yield* store.set(`${p}a`, text("A"), Duration.millis(30))
        yield* elapse("100 millis")
        assert.strictEqual(yield* store.delete([`${p}a`]), 0)
      }))

    it.effect("deletePattern deletes only matching keys and returns the count", () =>
      Effect.gen(function*() {
        const store = yield* CacheStore
        const p = prefix()
        const ep = Glob.escape(p)
        yield* store.set(`${p}user:1`, text("1"), long)
        yield* store.set(`${p}user:2`, text("2"), long)
        yield* store.set(`${p}user:10`, text("10"), long)
        yield* store.set(`${p}post:1`, text("p"), long)
        yield* store.set(`${p}users`, text("u"), long)
        assert.strictEqual(yield* store.deletePattern(`${ep}user:?`), 2)
        assertNone(yield* store.get(`${p}user:1`))
        assertBytes(yield* store.get(`${p}user:10`), text("10"))
        assert.strictEqual(yield* store.deletePattern(`${ep}user:*`), 1)
        assertBytes(yield* store.get(`${p}post:1`), text("p"))
        assertBytes(yield* store.get(`${p}users`), text("u"))
        assert.strictEqual(yield* store.deletePattern(`${ep}nothing:*`), 0)
        assert.strictEqual(yield* store.deletePattern(`${ep}*`), 2)
        assertNone(yield* store.get(`${p}post:1`))
      }))

    it.effect("deletePattern supports character classes", () =>
      Effect.gen(function*() {
        const store = yield* CacheStore
        const p = prefix()
        const ep = Glob.escape(p)
        yield* Effect.forEach(["a1", "b1", "c1", "d1"], (k) => store.set(`${p}${k}`, text(k), long))
        assert.strictEqual(yield* store.deletePattern(`${ep}[a-b]1`), 2)
        assert.strictEqual(yield* store.deletePattern(`${ep}[^c]1`), 1)
        assertBytes(yield* store.get(`${p}c1`), text("c1"))
      }))

    it.effect("deletePattern deletes more keys than one SCAN batch", () =>
      Effect.gen(function*() {
        const store = yield* CacheStore
        const p = prefix()
        const ep = Glob.escape(p)
        const n = 2500
        yield* Effect.forEach(
          Chunk.range(1, n),
          (i) => store.set(`${p}bulk:${i}`, bytes(i & 0xff), long),
          { concurrency: 100, discard: true }
        )
        yield* store.set(`${p}keep`, text("keep"), long)
        assert.strictEqual(yield* store.deletePattern(`${ep}bulk:*`), n)
        const sample = yield* store.getMany([`${p}bulk:1`, `${p}bulk:1000`, `${p}bulk:2500`])
        sample.forEach(assertNone)
        assertBytes(yield* store.get(`${p}keep`), text("keep"))
        assert.strictEqual(yield* store.deletePattern(`${ep}bulk:*`), 0)
      }), 30_000)

    it.effect("deletePattern refuses a pattern over maxPatternBytes bytes of UTF-8, deleting nothing", () =>
      Effect.gen(function*() {
        const store = yield* CacheStore
        const p = prefix()
        const ep = Glob.escape(p)
        yield* store.set(`${p}a`, text("a"), long)
        // (`maxPatternBytes` stars after the prefix; 2,049 two-byte characters: 4,098 bytes, 2,049 code units)
        for (const pattern of [`${ep}${"*".repeat(maxPatternBytes)}`, `${ep}*${"é".repeat(2049)}`]) {
          const refused = yield* Effect.flip(store.deletePattern(pattern))
          assert.strictEqual(refused.operation, "deletePattern")
          assert.strictEqual(refused.replied, true)
          assert.instanceOf(refused.cause, RangeError)
          assert.include(refused.message, `more than the ${maxPatternBytes} allowed`)
          assertBytes(yield* store.get(`${p}a`), text("a"))
        }
        // at the bound, and a long pattern of fewer bytes: matched as any other
        const atBound = `${ep}${"*".repeat(maxPatternBytes - ep.length)}`
        assert.strictEqual(new TextEncoder().encode(atBound).length, maxPatternBytes)
        assert.strictEqual(yield* store.deletePattern(`${ep}*${"é".repeat(1500)}`), 0)
        assert.strictEqual(yield* store.deletePattern(atBound), 1)
        assertNone(yield* store.get(`${p}a`))
      }))

    it.effect("an escaped pattern matches only the literal key", () =>
      Effect.gen(function*() {
        const store = yield* CacheStore
        const p = prefix()
        const literal = "a*b?[c]\\d"
        const lookalikes = ["aZZbQcd", "ab?[c]\\d", "a*b?[c]\\dX", "a*b?c\\d", "a*bX[c]\\d"]
        yield* store.set(`${p}${literal}`, text("literal"), long)
        yield* Effect.forEach(lookalikes, (k) => store.set(`${p}${k}`, text(k), long))
        assert.strictEqual(yield* store.deletePattern(Glob.escape(`${p}${literal}`)), 1)
        assertNone(yield* store.get(`${p}${literal}`))
        for (const k of lookalikes) {
          assertBytes(yield* store.get(`${p}${k}`), text(k))
        }
        // the unescaped pattern is a glob, and matches a lookalike
        assert.strictEqual(yield* store.deletePattern(`${Glob.escape(p)}${literal}`), 1)
        assertNone(yield* store.get(`${p}aZZbQcd`))
      }))

    it.effect("setIfAbsent writes only an absent key, and again once it expired", () =>
      Effect.gen(function*() {
        const store = yield* CacheStore
        const { first, key, read, second } = yield* beforeShortTtl(Effect.gen(function*() {
          const key = `${prefix()}lease`
          const first = yield* store.setIfAbsent(key, text("first"), shortTtl)
          const second = yield* store.setIfAbsent(key, text("second"), long)
          return { key, first, second, read: yield* store.get(key) }
        }))
        assert.isTrue(first)
        assert.isFalse(second)
        assertBytes(read, text("first"))
        yield* elapse(pastShortTtl)
        assertNone(yield* store.get(key))
        assert.isTrue(yield* store.setIfAbsent(key, text("third"), long))
        assertBytes(yield* store.get(key), text("third"))
      }))

    it.effect("compareAndSet writes only when the key holds exactly the expected bytes", () =>
      Effect.gen(function*() {
        const store = yield* CacheStore
        const expected = Uint8Array.from({ length: 256 }, (_, i) => i) // binary-safe comparison
        const { afterNo, afterYes, no, p, yes } = yield* beforeShortTtl(Effect.gen(function*() {
          const p = prefix()
          yield* store.set(`${p}k`, expected, long)
          const no = yield* store.compareAndSet(`${p}k`, bytes(0, 1, 2), text("no"), long)
          const afterNo = yield* store.get(`${p}k`)
          const yes = yield* store.compareAndSet(`${p}k`, expected, text("yes"), shortTtl)
          return { p, no, afterNo, yes, afterYes: yield* store.get(`${p}k`) }
        }))
        assert.isFalse(no)
        assertBytes(afterNo, expected)
        assert.isTrue(yes)
        assertBytes(afterYes, text("yes"))
        // the new TTL applies
        yield* elapse(pastShortTtl)
        assertNone(yield* store.get(`${p}k`))
        // an absent key is never written
        assert.isFalse(yield* store.compareAndSet(`${p}k`, expected, text("late"), long))
        assertNone(yield* store.get(`${p}k`))
        // a deleted key (an invalidation) makes a pending compareAndSet fail
        yield* store.set(`${p}j`, text("lease"), long)
        yield* store.delete([`${p}j`])
        assert.isFalse(yield* store.compareAndSet(`${p}j`, text("lease"), text("stale"), long))
        assertNone(yield* store.get(`${p}j`))
      }))

    it.effect("concurrent compareAndSets each answer for their own key, a key given twice in order", () =>
      Effect.gen(function*() {
        const store = yield* CacheStore
        const p = prefix()
        for (const name of ["a", "b", "c", "twice"]) yield* store.set(`${p}${name}`, text(`lease ${name}`), long)
        // the Redis store sends the first alone and the rest in one script call
        const written = yield* Effect.all([
          store.compareAndSet(`${p}a`, text("lease a"), text("A"), long),
          store.compareAndSet(`${p}b`, text("not b's lease"), text("B"), long),
          store.compareAndSet(`${p}absent`, text("lease"), text("X"), long),
          store.compareAndSet(`${p}twice`, text("lease twice"), text("first"), long),
          store.compareAndSet(`${p}twice`, text("lease twice"), text("second"), long),
          store.compareAndSet(`${p}c`, text("lease c"), text("C"), long)
        ], { concurrency: "unbounded" })
        deepStrictEqual(written, [true, false, false, true, false, true])
        assertBytes(yield* store.get(`${p}a`), text("A"))
        assertBytes(yield* store.get(`${p}b`), text("lease b"))
        assertNone(yield* store.get(`${p}absent`))
        assertBytes(yield* store.get(`${p}twice`), text("first"))
        assertBytes(yield* store.get(`${p}c`), text("C"))
      }))

    it.effect("compareAndDelete deletes only when the key holds exactly the expected bytes", () =>
      Effect.gen(function*() {
        const store = yield* CacheStore
        const p = prefix()
        yield* store.set(`${p}k`, text("mine"), long)
        assert.isFalse(yield* store.compareAndDelete(`${p}k`, text("theirs")))
        assertBytes(yield* store.get(`${p}k`), text("mine"))
        assert.isTrue(yield* store.compareAndDelete(`${p}k`, text("mine")))
        assertNone(yield* store.get(`${p}k`))
        assert.isFalse(yield* store.compareAndDelete(`${p}k`, text("mine")))
      }))

    describe("getOrLease", () => {
      it.effect("an absent key: None, and the key now holds the lease with its TTL", () =>
        Effect.gen(function*() {
          const store = yield* CacheStore
          const { key, leased, read } = yield* beforeShortTtl(Effect.gen(function*() {
            const key = `${prefix()}k`
            const leased = yield* store.getOrLease(key, text("lease"), shortTtl)
            return { key, leased, read: yield* store.get(key) }
          }))
          assertNone(leased)
          assertBytes(read, text("lease"))
          yield* elapse(pastShortTtl)
          assertNone(yield* store.get(key))
        }))

      it.effect("a present key: Some(bytes), and the key is unchanged, its TTL too", () =>
        Effect.gen(function*() {
          const store = yield* CacheStore
          const value = Uint8Array.from({ length: 256 }, (_, i) => 255 - i)
          const { key, leased, read } = yield* beforeShortTtl(Effect.gen(function*() {
            const key = `${prefix()}k`
            yield* store.set(key, value, shortTtl)
            const leased = yield* store.getOrLease(key, text("lease"), long)
            return { key, leased, read: yield* store.get(key) }
          }))
          assertBytes(leased, value)
          assertBytes(read, value)
          yield* elapse(pastShortTtl)
          assertNone(yield* store.get(key))
        }))

      it.effect("an expired key is leased", () =>
        Effect.gen(function*() {
          const store = yield* CacheStore
          const key = `${prefix()}k`
          yield* store.set(key, text("old"), shortTtl)
          yield* elapse(pastShortTtl)
          assertNone(yield* store.getOrLease(key, bytes(0, 0xff, 0x80), long))
          assertBytes(yield* store.get(key), bytes(0, 0xff, 0x80))
        }))

      it.effect("concurrent getOrLease of one absent key: exactly one None, the others read its lease", () =>
        Effect.gen(function*() {
          const store = yield* CacheStore
          // two alone; then six after a read of another key, which may go out alone on Redis, so that
          // the six share one batch (a key asked twice in one script call)
          for (const [n, lead] of [[2, false], [6, true]] as const) {
            const key = `${prefix()}k`
            const leases = Array.from({ length: n }, (_, i) => text(`lease ${i}`))
            const reads = leases.map((lease) => store.getOrLease(key, lease, long))
            const all = yield* Effect.all(lead ? [store.get(`${key}:other`), ...reads] : reads, {
              concurrency: "unbounded"
            })
            const answers = lead ? all.slice(1) : all
            const winners = answers.flatMap((answer, i) => (Option.isNone(answer) ? [i] : []))
            assert.strictEqual(winners.length, 1, `${winners.length} of ${n} callers got None`)
            const winner = leases[winners[0]!]!
            assertBytes(yield* store.get(key), winner)
            answers.forEach((answer, i) => {
              if (i !== winners[0]) assertBytes(answer, winner)
            })
          }
        }))

      it.effect("lease-reads and plain gets of absent keys in one turn: only the lease-reads' keys are written", () =>
        Effect.gen(function*() {
          const store = yield* CacheStore
          const p = prefix()
          // the first read of a turn may go out alone on Redis: the four after it share one batch
          const answers = yield* Effect.all([
            store.get(`${p}first`),
            store.getOrLease(`${p}leased a`, text("lease a"), long),
            store.get(`${p}plain b`),
            store.getOrLease(`${p}leased c`, text("lease c"), long),
            store.get(`${p}plain d`)
          ], { concurrency: "unbounded" })
          answers.forEach(assertNone)
          const after = yield* store.getMany([
            `${p}first`,
            `${p}leased a`,
            `${p}plain b`,
            `${p}leased c`,
            `${p}plain d`
          ])
          assertNone(after[0]!)
          assertBytes(after[1]!, text("lease a"))
          assertNone(after[2]!)
          assertBytes(after[3]!, text("lease c"))
          assertNone(after[4]!)
        }))
    })
  })
