/**
 * An in-memory `CacheStore`: bounded (least recently used entries go first), with expiry read from
 * Effect's `Clock`, so `TestClock` drives it in tests. It is a real store, not a mock: it passes the
 * same conformance suite as the Redis store, and serves as the embedded default and as the store of
 * an application's tests.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { CacheStore, InvalidStoreOptions } from "./CacheStore.js"
import type { Bytes } from "./CacheStore.js"
import * as Glob from "./Glob.js"

/**
 * @since 0.1.0
 */
export interface Options {
  /** The most entries kept; the least recently used is evicted past it. Default 10,000. */
  readonly maxEntries?: number | undefined
}

const sameBytes = (a: Bytes, b: Bytes): boolean => {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

interface Slot {
  readonly value: Bytes
  readonly expiresAt: number
}

/**
 * Makes a memory store.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { MemoryCacheStore } from "@cache-aside/core"
 *
 * const store = MemoryCacheStore.make({ maxEntries: 1000 })
 * ```
 *
 * @since 0.1.0
 */
export const make = (options: Options = {}): Effect.Effect<CacheStore["Type"], InvalidStoreOptions> =>
  Effect.gen(function*() {
    const maxEntries = options.maxEntries ?? 10_000
    if (!Number.isInteger(maxEntries) || maxEntries < 1) {
      return yield* new InvalidStoreOptions({ message: `maxEntries must be a positive integer, got ${maxEntries}` })
    }
    const clock = yield* Effect.clock
    const slots = new Map<string, Slot>()

    const now = () => clock.unsafeCurrentTimeMillis()

    const read = (key: string, at: number): Option.Option<Bytes> => {
      const slot = slots.get(key)
      if (slot === undefined) return Option.none()
      if (slot.expiresAt <= at) {
        slots.delete(key)
        return Option.none()
      }
      // touch: move to the most recently used end
      slots.delete(key)
      slots.set(key, slot)
      return Option.some(slot.value)
    }

    const evict = () => {
      while (slots.size > maxEntries) {
        const oldest = slots.keys().next()
        if (oldest.done) return
        slots.delete(oldest.value)
      }
    }

    const write = (key: string, value: Bytes, ttl: Duration.Duration) => {
      const millis = Math.max(1, Math.ceil(Duration.toMillis(ttl)))
      slots.delete(key)
      slots.set(key, { value, expiresAt: now() + millis })
      evict()
    }

    const live = (key: string): Slot | undefined => {
      const slot = slots.get(key)
      return slot !== undefined && slot.expiresAt > now() ? slot : undefined
    }

    return CacheStore.of({
      get: (key) => Effect.sync(() => read(key, now())),
      getMany: (keys) =>
        Effect.sync(() => {
          const at = now()
          return keys.map((key) => read(key, at))
        }),
      set: (key, value, ttl) => Effect.sync(() => write(key, value, ttl)),
      setIfAbsent: (key, value, ttl) =>
        Effect.sync(() => {
          if (live(key) !== undefined) return false
          write(key, value, ttl)
          return true
        }),
      compareAndSet: (key, expected, value, ttl) =>
        Effect.sync(() => {
          const slot = live(key)
          if (slot === undefined || !sameBytes(slot.value, expected)) return false
          write(key, value, ttl)
          return true
        }),
      compareAndDelete: (key, expected) =>
        Effect.sync(() => {
          const slot = live(key)
          if (slot === undefined || !sameBytes(slot.value, expected)) return false
          slots.delete(key)
          return true
        }),
      delete: (keys) =>
        Effect.sync(() => {
          const at = now()
          let count = 0
          for (const key of keys) {
            const slot = slots.get(key)
            if (slot !== undefined) {
              slots.delete(key)
              if (slot.expiresAt > at) count++
            }
          }
          return count
        }),
      deletePattern: (pattern) =>
        Effect.sync(() => {
          const matches = Glob.matcher(pattern)
          const at = now()
          let count = 0
          for (const [key, slot] of slots) {
            if (matches(key)) {
              slots.delete(key)
              if (slot.expiresAt > at) count++
            }
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
 * import { Effect } from "effect"
 * import { CacheAside, MemoryCacheStore, Metrics } from "@cache-aside/core"
 *
 * const TestLayers = Layer.merge(MemoryCacheStore.layer({ maxEntries: 100 }), Metrics.layer)
 * ```
 *
 * @since 0.1.0
 */
export const layer = (options: Options = {}): Layer.Layer<CacheStore, InvalidStoreOptions> =>
  Layer.effect(CacheStore, make(options))
