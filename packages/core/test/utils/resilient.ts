/**
 * The resilient store under test, over a memory store with fault injection between them, with
 * retries off and no cooldown jitter unless a test asks for them.
 */
import * as Effect from "effect/Effect"
import { type CacheStore, FaultInjection, MemoryCacheStore, Metrics, ResilientCacheStore } from "../../src/index.js"

/**
 * memory ← (`wrap`) ← fault injection ← resilient store; `memory` sizes the memory store, `wrap`
 * (for example a store that records its calls) sits between it and the faults.
 */
export const resilientOverMemory = (
  options: ResilientCacheStore.Options = {},
  memory: MemoryCacheStore.Options = {},
  wrap: (store: CacheStore.CacheStore["Type"]) => CacheStore.CacheStore["Type"] = (store) => store
) =>
  Effect.gen(function*() {
    const inner = yield* MemoryCacheStore.make(memory)
    const { control: faults, store: faulty } = yield* FaultInjection.make(wrap(inner))
    const store = yield* ResilientCacheStore.make(faulty, {
      readRetry: false,
      writeRetry: false,
      invalidationRetry: false,
      cooldownJitter: 0,
      ...options
    })
    return { memory: inner, faults, store, stats: (yield* Metrics.Metrics).storeSnapshot() }
  })
