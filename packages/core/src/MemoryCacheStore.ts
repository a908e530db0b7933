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
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { CacheStore, CacheUnavailable, InvalidStoreOptions } from "./CacheStore.js"
import type { Bytes } from "./CacheStore.js"
import * as Glob from "./Glob.js"
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
  readonly size: number
}

const sizeOf = (key: string, value: Bytes): number => key.length * 2 + value.length + overheadBytes

/**
 * The slots, least recently used first (a `Map` keeps insertion order: a touch re-inserts), with
 * the bytes they hold. Every write goes through `put`, every removal through `remove`, so the byte
 * count is kept in one place.
 */
class Slots {
  private readonly map = new Map<string, Slot>()
  private bytes = 0
  constructor(readonly maxEntries: number, readonly maxBytes: number) {}

  get size(): number {
    return this.map.size
  }
  get totalBytes(): number {
    return this.bytes
  }
  peek(key: string): Slot | undefined {
    return this.map.get(key)
  }
  /** Moves a slot to the most recently used end. */
  touch(key: string, slot: Slot): void {
    this.map.delete(key)
    this.map.set(key, slot)
  }
  remove(key: string): Slot | undefined {
    const slot = this.map.get(key)
    if (slot === undefined) return undefined
    this.map.delete(key)
    this.bytes -= slot.size
    return slot
  }
  put(key: string, slot: Slot): void {
    this.remove(key)
    this.map.set(key, slot)
    this.bytes += slot.size
    while (this.map.size > this.maxEntries || this.bytes > this.maxBytes) {
      const oldest = this.map.keys().next()
      if (oldest.done === true) return
      this.remove(oldest.value)
    }
  }
  entries(): IterableIterator<[string, Slot]> {
    return this.map.entries()
  }
}

const checkOptions = (options: Options): Either.Either<{ maxEntries: number; maxBytes: number }, string> =>
  Either.gen(function*() {
    const maxEntries = yield* validate.integer("maxEntries", options.maxEntries ?? 10_000, 1)
    const maxBytes = yield* validate.integer("maxBytes", options.maxBytes ?? 64 * 1024 * 1024, 8 * 1024)
    return { maxEntries, maxBytes }
  })

/**
 * Makes a memory store.
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
    const { maxBytes, maxEntries } = checked.right
    const maxEntryBytes = Math.floor(maxBytes * maxEntryFraction)
    const clock = yield* Effect.clock
    const slots = new Slots(maxEntries, maxBytes)

    const now = () => clock.unsafeCurrentTimeMillis()

    const read = (key: string, at: number): Option.Option<Bytes> => {
      const slot = slots.peek(key)
      if (slot === undefined) return Option.none()
      if (slot.expiresAt <= at) {
        slots.remove(key)
        return Option.none()
      }
      slots.touch(key, slot)
      return Option.some(slot.value)
    }

    const refusals = new Map<string, CacheUnavailable>()
    /** Whether an entry is too large to keep; `set` drops the key's older value. */
    const tooLarge = (operation: string, key: string, value: Bytes) => {
      const size = sizeOf(key, value)
      if (size <= maxEntryBytes) return undefined
      let refusal = refusals.get(operation)
      if (refusal === undefined) {
        refusal = new CacheUnavailable({
          operation,
          replied: true,
          cause: new Error(`entry larger than the memory store keeps (an eighth of maxBytes: ${maxEntryBytes} bytes)`)
        })
        refusals.set(operation, refusal)
      }
      return refusal
    }

    const write = (key: string, value: Bytes, ttl: Duration.Duration) => {
      const millis = Math.max(1, Math.ceil(Duration.toMillis(ttl)))
      slots.put(key, { value, expiresAt: now() + millis, size: sizeOf(key, value) })
    }

    const live = (key: string): Slot | undefined => {
      const slot = slots.peek(key)
      return slot !== undefined && slot.expiresAt > now() ? slot : undefined
    }

    return CacheStore.of({
      get: (key) => Effect.sync(() => read(key, now())),
      getMany: (keys) =>
        Effect.sync(() => {
          const at = now()
          return keys.map((key) => read(key, at))
        }),
      set: (key, value, ttl) =>
        Effect.suspend(() => {
          const refused = tooLarge("set", key, value)
          if (refused === undefined) return Effect.sync(() => write(key, value, ttl))
          slots.remove(key) // the older value must not outlive the write that replaced it
          return Effect.fail(refused)
        }),
      setIfAbsent: (key, value, ttl) =>
        Effect.suspend(() => {
          if (live(key) !== undefined) return Effect.succeed(false)
          const refused = tooLarge("setIfAbsent", key, value)
          if (refused !== undefined) return Effect.fail(refused)
          write(key, value, ttl)
          return Effect.succeed(true)
        }),
      compareAndSet: (key, expected, value, ttl) =>
        Effect.suspend(() => {
          const slot = live(key)
          if (slot === undefined || !sameBytes(slot.value, expected)) return Effect.succeed(false)
          const refused = tooLarge("compareAndSet", key, value)
          if (refused !== undefined) return Effect.fail(refused)
          write(key, value, ttl)
          return Effect.succeed(true)
        }),
      compareAndDelete: (key, expected) =>
        Effect.sync(() => {
          const slot = live(key)
          if (slot === undefined || !sameBytes(slot.value, expected)) return false
          slots.remove(key)
          return true
        }),
      delete: (keys) =>
        Effect.sync(() => {
          const at = now()
          let count = 0
          for (const key of keys) {
            const slot = slots.remove(key)
            if (slot !== undefined && slot.expiresAt > at) count++
          }
          return count
        }),
      deletePattern: (pattern) =>
        Effect.sync(() => {
          const matches = Glob.matcher(pattern)
          const at = now()
          const doomed: Array<string> = []
          for (const [key] of slots.entries()) if (matches(key)) doomed.push(key)
          let count = 0
          for (const key of doomed) {
            const slot = slots.remove(key)
            if (slot !== undefined && slot.expiresAt > at) count++
          }
          return count
        })
    })
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
