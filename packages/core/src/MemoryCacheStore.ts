/**
 * An in-memory `CacheStore`: bounded in entries and in bytes (least recently used entries go
 * first), with expiry read from Effect's `Clock`, so `TestClock` drives it in tests. It is a real
 * store, not a mock: it passes the same conformance suite as the Redis store, and serves as the
 * embedded default and as the store of an application's tests.
 *
 * An entry larger than an eighth of the byte budget is never kept: its write is refused with
 * `CacheUnavailable` (`replied: true`, like a Redis `OOM` reply: the store answered, so a circuit
 * breaker does not count it), and a plain `set` removes the key's older value first, so the
 * refused write never leaves a stale value behind. The read path drops failed cache writes, so the
 * caller still gets its value; the write is counted as a write error.
 *
 * `deletePattern` matches keys as Redis does (over their UTF-8 bytes, see `Glob`), so it removes the
 * keys Redis would. A pattern longer than `CacheStore.maxPatternBytes` is refused as the Redis store
 * refuses it, and a pattern whose matching takes more than 50 million steps over the keys held (a
 * long pattern against long keys) the same way, with nothing deleted.
 *
 * @since 0.1.0
 */
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { CacheStore, CacheUnavailable, InvalidStoreOptions, patternRefusal } from "./CacheStore.js"
import type { Bytes } from "./CacheStore.js"
import * as Glob from "./Glob.js"
import { Lru } from "./internal/lru.js"
import * as validate from "./internal/validate.js"

/**
 * @since 0.1.0
 */
export interface Options {
  /** The most entries kept; the least recently used is evicted past it. Default 10,000. */
  readonly maxEntries?: number | undefined
  /**
   * The most bytes kept (values, keys and a fixed overhead per entry); the least recently used
   * entries are evicted past it. An entry larger than an eighth of it is refused. Default 64 MiB.
   */
  readonly maxBytes?: number | undefined
}

/** The bytes an entry is charged beyond its value and key: the slot, the map's node, the timestamps. */
const overheadBytes = 64

/**
 * The matching steps one `deletePattern` may take over every key (each step compares a byte of a
 * key with a token of the pattern): about a quarter of a second. Ordinary patterns take a few steps
 * per key; only a long pattern against long keys (hostile input) reaches it, and is refused.
 */
const maxPatternSteps = 50_000_000

/** An entry larger than this fraction of `maxBytes` is refused. */
const maxEntryFraction = 1 / 8

const sameBytes = (a: Bytes, b: Bytes): boolean => {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

interface Slot {
  readonly value: Bytes
  readonly expiresAt: number
}

const sizeOf = (key: string, value: Bytes): number => key.length * 2 + value.length + overheadBytes

/** Every option: a key that misspells one is refused, any other is logged and ignored. */
const optionNames: { readonly [K in keyof Required<Options>]: true } = { maxEntries: true, maxBytes: true }

const checkOptions = (
  options: Options
): Either.Either<{ maxEntries: number; maxBytes: number; unknown: ReadonlyArray<string> }, string> =>
  Either.gen(function*() {
    yield* validate.record("options", options)
    const unknown = yield* validate.known(undefined, options, optionNames)
    const maxEntries = yield* validate.integer("maxEntries", options.maxEntries ?? 10_000, 1)
    const maxBytes = yield* validate.integer("maxBytes", options.maxBytes ?? 64 * 1024 * 1024, 8 * 1024)
    return { maxEntries, maxBytes, unknown }
  })

/**
 * The store's state and operations: the slots (an LRU bounded by entries and bytes, `internal/lru.ts`:
 * no preallocation, whatever `maxEntries` is), the clock, the size limit.
 */
class MemoryStore {
  private readonly refusals = new Map<string, CacheUnavailable>()
  constructor(
    private readonly slots: Lru<Slot>,
    private readonly clock: Clock.Clock,
    private readonly maxEntryBytes: number
  ) {}

  now(): number {
    return this.clock.unsafeCurrentTimeMillis()
  }

  read(key: string, at: number): Option.Option<Bytes> {
    const slot = this.slots.get(key)
    if (slot === undefined) return Option.none()
    if (slot.expiresAt <= at) {
      this.slots.delete(key)
      return Option.none()
    }
    return Option.some(slot.value)
  }

  /** The refusal of an entry too large to keep (one per operation, made once), else `undefined`. */
  tooLarge(operation: string, key: string, value: Bytes): CacheUnavailable | undefined {
    if (sizeOf(key, value) <= this.maxEntryBytes) return undefined
    let refusal = this.refusals.get(operation)
    if (refusal === undefined) {
      refusal = new CacheUnavailable({
        operation,
        replied: true,
        cause: new Error(
          `entry larger than the memory store keeps (an eighth of maxBytes: ${this.maxEntryBytes} bytes)`
        )
      })
      this.refusals.set(operation, refusal)
    }
    return refusal
  }

  write(key: string, value: Bytes, ttl: Duration.Duration): void {
    const millis = Math.max(1, Math.ceil(Duration.toMillis(ttl)))
    this.slots.set(key, { value, expiresAt: this.now() + millis }, sizeOf(key, value))
  }

  /** Writes unless the entry is too large: `true` when written. */
  writeChecked(
    operation: string,
    key: string,
    value: Bytes,
    ttl: Duration.Duration
  ): Effect.Effect<boolean, CacheUnavailable> {
    const refused = this.tooLarge(operation, key, value)
    if (refused !== undefined) return Effect.fail(refused)
    this.write(key, value, ttl)
    return Effect.succeed(true)
  }

  live(key: string): Slot | undefined {
    const slot = this.slots.peek(key)
    return slot !== undefined && slot.expiresAt > this.now() ? slot : undefined
  }

  /** Removes keys; counts those that were live. */
  remove(keys: Iterable<string>): number {
    const at = this.now()
    let count = 0
    for (const key of keys) {
      const slot = this.slots.peek(key)
      if (slot !== undefined && this.slots.delete(key) && slot.expiresAt > at) count++
    }
    return count
  }

  service(): CacheStore["Type"] {
    return CacheStore.of({
      get: (key) => Effect.sync(() => this.read(key, this.now())),
      getOrLease: (key, lease, ttl) =>
        Effect.suspend(() => {
          const at = this.now()
          const found = this.read(key, at)
          if (Option.isSome(found)) return Effect.succeed(found)
          // a lease too large to keep is a refused lease write, as on Redis
          return Effect.as(this.writeChecked("setIfAbsent", key, lease, ttl), Option.none())
        }),
      getMany: (keys) =>
        Effect.sync(() => {
          const at = this.now()
          return keys.map((key) => this.read(key, at))
        }),
      set: (key, value, ttl) =>
        Effect.suspend(() => {
          const refused = this.tooLarge("set", key, value)
          if (refused === undefined) return Effect.sync(() => this.write(key, value, ttl))
          this.slots.delete(key) // the older value must not outlive the write that replaced it
          return Effect.fail(refused)
        }),
      setIfAbsent: (key, value, ttl) =>
        Effect.suspend(() =>
          this.live(key) !== undefined ? Effect.succeed(false) : this.writeChecked("setIfAbsent", key, value, ttl)
        ),
      compareAndSet: (key, expected, value, ttl) =>
        Effect.suspend(() => {
          const slot = this.live(key)
          return slot === undefined || !sameBytes(slot.value, expected)
            ? Effect.succeed(false)
            : this.writeChecked("compareAndSet", key, value, ttl)
        }),
      compareAndDelete: (key, expected) =>
        Effect.sync(() => {
          const slot = this.live(key)
          if (slot === undefined || !sameBytes(slot.value, expected)) return false
          this.slots.delete(key)
          return true
        }),
      delete: (keys) => Effect.sync(() => this.remove(keys)),
      deletePattern: (pattern) =>
        Effect.suspend(() => {
          const refused = patternRefusal(pattern)
          if (refused !== undefined) return Effect.fail(refused)
          // matched as Redis matches (over UTF-8 bytes), within a budget of steps: a long pattern
          // against long keys would otherwise hold the process for seconds
          const budget: Glob.Budget = { steps: maxPatternSteps, exceeded: false }
          const matches = Glob.bytesMatcher(Glob.utf8Bytes(pattern), budget)
          const doomed: Array<string> = []
          for (const key of this.slots.keys()) {
            if (matches(Glob.utf8Bytes(key))) doomed.push(key)
            if (budget.exceeded) {
              return Effect.fail(
                new CacheUnavailable({
                  operation: "deletePattern",
                  cause: new RangeError(
                    `cache-aside: the pattern (${pattern.length} characters) takes more than ${maxPatternSteps} ` +
                      "matching steps over the memory store's keys; nothing was deleted: use a shorter pattern"
                  ),
                  replied: true
                })
              )
            }
          }
          return Effect.succeed(this.remove(doomed))
        })
    })
  }
}

/**
 * Makes a memory store. Options that cannot make a working store fail with `InvalidStoreOptions`, and
 * so does an option name that misspells one (`maxEntires`); other keys it does not know are logged
 * at WARN and ignored.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { MemoryCacheStore } from "@cache-aside/core"
 *
 * const store = MemoryCacheStore.make({ maxEntries: 1000, maxBytes: 16 * 1024 * 1024 })
 * ```
 *
 * @since 0.1.0
 */
export const make = (options: Options = {}): Effect.Effect<CacheStore["Type"], InvalidStoreOptions> =>
  Effect.gen(function*() {
    const checked = checkOptions(options)
    if (Either.isLeft(checked)) return yield* new InvalidStoreOptions({ message: checked.left })
    const { maxBytes, maxEntries, unknown } = checked.right
    if (unknown.length > 0) {
      // not a typo of an option (those are refused): a field of a larger config spread in, say
      yield* Effect.logWarning(
        `cache-aside: options MemoryCacheStore.make does not know, ignored: ${unknown.join(", ")}`
      )
    }
    const store = new MemoryStore(
      new Lru<Slot>({ maxEntries, maxSize: maxBytes }),
      yield* Effect.clock,
      Math.floor(maxBytes * maxEntryFraction)
    )
    return store.service()
  })

/**
 * A layer with a fresh memory store.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { MemoryCacheStore, Metrics } from "@cache-aside/core"
 *
 * const TestLayers = Layer.merge(MemoryCacheStore.layer({ maxEntries: 100, maxBytes: 1024 * 1024 }), Metrics.layer)
 * ```
 *
 * @since 0.1.0
 */
export const layer = (options: Options = {}): Layer.Layer<CacheStore, InvalidStoreOptions> =>
  Layer.effect(CacheStore, make(options))
