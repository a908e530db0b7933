/**
 * Cache metrics: counters per namespace, exported through Effect's `Metric` (so OpenTelemetry and
 * Prometheus exporters see them) and kept per layer for a `snapshot` with the hit ratio.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"

/**
 * What the read path records, per namespace, with the description each Effect `Metric` carries
 * (exported as `cache_aside_<snake_case>_total` counters tagged with `namespace`).
 *
 * @since 0.1.0
 */
export const eventDescriptions = {
  hits: "gets answered from the cache (a cached \"not found\" and a stale serve are hits)",
  misses: "gets not answered from the cache",
  loads: "lookups run",
  loadErrors: "lookups that failed, died (a defect: a lookup that threw) or passed their hard timeout",
  cacheErrors: "store operations that failed (CacheUnavailable)",
  fallbacks: "reads served by the lookup because the store failed",
  coalesced: "gets that joined a read or load already in flight for the same key",
  decodeErrors: "stored entries that failed to decode (treated as misses and evicted)",
  writeErrors: "cache writes dropped after a successful lookup",
  staleServes: "stale values served (stale-while-revalidate, or fail-safe after a failed or slow lookup)",
  earlyRefreshes: "background refreshes started early by probabilistic early expiration (XFetch)",
  lockWaits: "gets that waited for another process' fill (the lock option)",
  lockTimeouts: "lock waits that gave up and loaded by themselves",
  leaseRejected: "fills refused because the lease was gone: the key was invalidated or leased again meanwhile",
  nearHits: "gets answered from the near cache (L1) in process memory (counted in hits too)",
  nearEvictions: "near cache entries evicted by an invalidation from another process or a write by any Redis client",
  nearFlushes:
    "near cache flushes because the bus connection was lost or came back (invalidations may have been missed)",
  nearBypasses:
    "gets of a key the near cache held that it did not answer: the bus was not current (lost, silent, or this process stalled)",
  lookupTimeouts: "lookups that passed their soft or hard timeout",
  ttlErrors: "values not cached because the ttl function gave an invalid duration (NaN, infinite, too long)",
  integrityErrors: "stored entries whose signature did not verify, with a signing key (treated as misses and evicted)"
} as const

/**
 * @since 0.1.0
 */
export const events = Object.keys(eventDescriptions) as ReadonlyArray<keyof typeof eventDescriptions>

/**
 * @since 0.1.0
 */
export type Event = typeof events[number]

/**
 * @since 0.1.0
 */
export type Snapshot = { readonly [K in Event]: number } & {
  /** hits / (hits + misses), 0 when there were no reads. */
  readonly hitRatio: number
  /**
   * Store-wide figures of the resilient store(s) (`ResilientCacheStore`): the same in every
   * namespace's snapshot, since one store serves all namespaces. Summed over stores when there
   * are several; `breaker` is then the worst state of any of them.
   */
  readonly store: StoreSnapshot
}

/**
 * What a resilient store (`ResilientCacheStore`) records, store-wide rather than per namespace.
 *
 * - `timeouts`: store operations that did not answer within their timeout
 * - `failures`: store operations that failed (timeouts included; rejections by the open breaker not)
 * - `rejected`: operations refused at once because the circuit breaker was open
 * - `retries`: operations attempted again after a transient failure
 * - `breakerOpened` / `breakerClosed`: circuit breaker transitions (a failed probe re-opens it)
 * - `invalidationsQueued`: invalidations (keys or patterns) that could not reach the store and were queued
 * - `invalidationsReplayed`: queued invalidations later applied to the store
 * - `replayFailures`: replay attempts that failed (the queue is kept and replayed later)
 * - `queueOverflows`: invalidations dropped or collapsed because the queue was full
 * - `droppedWrites`: cache writes (`set`) not applied because the store failed, the breaker was
 *   open, or queued invalidations could not be replayed first
 * - `oversizedEntries`: entries over the store's `maxEntryBytes`, removed without being transferred
 * - `authFailures` / `tlsFailures`: episodes of the store refusing the credentials or the TLS
 *   handshake failing (counted once per episode, not per reconnect attempt)
 *
 * @since 0.1.0
 */
export const storeEvents = [
  "timeouts",
  "failures",
  "rejected",
  "retries",
  "breakerOpened",
  "breakerClosed",
  "invalidationsQueued",
  "invalidationsReplayed",
  "replayFailures",
  "queueOverflows",
  "droppedWrites",
  "oversizedEntries",
  "authFailures",
  "tlsFailures"
] as const

/**
 * @since 0.1.0
 */
export type StoreEvent = typeof storeEvents[number]

/**
 * The circuit breaker of a resilient store: `closed` (calls go through), `open` (calls fail fast),
 * `half-open` (one probe is let through after the cooldown).
 *
 * @since 0.1.0
 */
export type BreakerState = "closed" | "open" | "half-open"

/**
 * @since 0.1.0
 */
export type StoreSnapshot = { readonly [K in StoreEvent]: number } & {
  readonly breaker: BreakerState
  /** Invalidations waiting to be replayed. */
  readonly queueSize: number
  /** Estimated bytes the queued invalidations hold (bounded by `maxQueuedInvalidationBytes`). */
  readonly queueBytes: number
}

/**
 * Synchronous recorders for one store (named, so that several stores, e.g. two tiers, keep
 * apart).
 *
 * @since 0.1.0
 */
export interface StoreRecorder {
  readonly increment: (event: StoreEvent, by?: number) => void
  readonly setBreaker: (state: BreakerState) => void
  readonly setQueueSize: (size: number) => void
  /** Estimated bytes the invalidation queue holds (optional for recorders made elsewhere). */
  readonly setQueueBytes?: ((bytes: number) => void) | undefined
}

/**
 * Synchronous recorders for one namespace: cheap enough for the hit path.
 *
 * @since 0.1.0
 */
export interface Recorder {
  readonly increment: (event: Event, by?: number) => void
  /** Records how long a lookup took, in milliseconds. */
  readonly observeLoad: (millis: number) => void
}

/**
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Metrics } from "@cache-aside/core"
 *
 * const hitRatio = Effect.gen(function* () {
 *   const metrics = yield* Metrics.Metrics
 *   const snapshot = yield* metrics.snapshot("user")
 *   // snapshot.store.breaker: "closed" | "open" | "half-open" (with a ResilientCacheStore)
 *   return snapshot.hitRatio
 * }).pipe(Effect.provide(Metrics.layer))
 * ```
 *
 * @since 0.1.0
 */
export class Metrics extends Context.Tag("@cache-aside/core/Metrics")<Metrics, {
  /** The recorder of a namespace, kept as long as the service (see `scopedRecorder`). */
  readonly recorder: (namespace: string) => Recorder
  /**
   * The recorder of a namespace, held until the scope closes: what the service keeps for the
   * namespace is let go when the last holder closes (kept among the recently closed, at most
   * 1,024, then folded into the total of `snapshot()`). `CacheAside.make` takes its recorder here,
   * through `namespaceRecorder`. Optional, so that a service written before it still fits: without
   * it, `recorder` is used and nothing is let go.
   */
  readonly scopedRecorder?: ((namespace: string) => Effect.Effect<Recorder, never, Scope.Scope>) | undefined
  /**
   * Counters of one namespace, or summed over all of them. A closed namespace (its last cache
   * closed) stays readable, and counts on if a cache of it opens again, while it is among the
   * 1,024 closed most recently; past that its counts are in the total only, and a cache of it
   * opened again starts from zero.
   */
  readonly snapshot: (namespace?: string) => Effect.Effect<Snapshot>
  /** The recorder of a store (by the store's name). */
  readonly storeRecorder: (store: string) => StoreRecorder
  /** Figures of one store, or of all of them (summed; the worst breaker state). */
  readonly storeSnapshot: (store?: string) => Effect.Effect<StoreSnapshot>
}>() {}

const snakeCase = (name: string) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)

const counters = Object.fromEntries(
  events.map((event) => [
    event,
    Metric.counter(`cache_aside_${snakeCase(event)}_total`, { description: eventDescriptions[event] })
  ])
) as { readonly [K in Event]: Metric.Metric.Counter<number> }

const loadDuration = Metric.histogram(
  "cache_aside_load_duration_ms",
  MetricBoundaries.exponential({ start: 0.5, factor: 2, count: 16 }),
  "lookup latency in milliseconds"
)

const storeCounters: { readonly [K in StoreEvent]: Metric.Metric.Counter<number> } = {
  timeouts: Metric.counter("cache_aside_store_timeouts_total", { description: "store operations that timed out" }),
  failures: Metric.counter("cache_aside_store_failures_total", { description: "store operations that failed" }),
  rejected: Metric.counter("cache_aside_store_rejected_total", {
    description: "store operations refused by the open circuit breaker"
  }),
  retries: Metric.counter("cache_aside_store_retries_total", { description: "store operations retried" }),
  breakerOpened: Metric.counter("cache_aside_breaker_opened_total", { description: "circuit breaker openings" }),
  breakerClosed: Metric.counter("cache_aside_breaker_closed_total", { description: "circuit breaker closings" }),
  invalidationsQueued: Metric.counter("cache_aside_invalidations_queued_total", {
    description: "invalidations queued because the store could not be reached"
  }),
  invalidationsReplayed: Metric.counter("cache_aside_invalidations_replayed_total", {
    description: "queued invalidations applied to the store"
  }),
  replayFailures: Metric.counter("cache_aside_invalidation_replay_failures_total", {
    description: "invalidation replays that failed"
  }),
  queueOverflows: Metric.counter("cache_aside_invalidation_queue_overflows_total", {
    description: "invalidations dropped or collapsed because the queue was full"
  }),
  droppedWrites: Metric.counter("cache_aside_store_dropped_writes_total", {
    description: "cache writes not applied by the store"
  }),
  oversizedEntries: Metric.counter("cache_aside_store_oversized_entries_total", {
    description: "entries larger than maxEntryBytes, removed by the store without being read"
  }),
  authFailures: Metric.counter("cache_aside_store_auth_failures_total", {
    description: "episodes of the store refusing the credentials (wrong password, unknown user)"
  }),
  tlsFailures: Metric.counter("cache_aside_store_tls_failures_total", {
    description: "episodes of the TLS handshake with the store failing (certificate, server name)"
  })
}

const breakerGauge = Metric.gauge("cache_aside_breaker_state", {
  description: "circuit breaker state: 0 closed, 1 half-open, 2 open"
})

const queueGauge = Metric.gauge("cache_aside_invalidation_queue_size", {
  description: "invalidations waiting to be replayed"
})

const queueBytesGauge = Metric.gauge("cache_aside_invalidation_queue_bytes", {
  description: "estimated bytes held by the invalidations waiting to be replayed"
})

const breakerLevel: { readonly [K in BreakerState]: number } = { closed: 0, "half-open": 1, open: 2 }

interface StoreState {
  readonly counts: Record<StoreEvent, number>
  breaker: BreakerState
  queueSize: number
  queueBytes: number
}

const emptyStoreState = (): StoreState => ({
  counts: Object.fromEntries(storeEvents.map((event) => [event, 0])) as Record<StoreEvent, number>,
  breaker: "closed",
  queueSize: 0,
  queueBytes: 0
})

const toStoreSnapshot = (states: Iterable<StoreState>): StoreSnapshot => {
  const total = emptyStoreState()
  for (const state of states) {
    for (const event of storeEvents) total.counts[event] += state.counts[event]
    total.queueSize += state.queueSize
    total.queueBytes += state.queueBytes
    if (breakerLevel[state.breaker] > breakerLevel[total.breaker]) total.breaker = state.breaker
  }
  return { ...total.counts, breaker: total.breaker, queueSize: total.queueSize, queueBytes: total.queueBytes }
}

const emptyCounts = (): Record<Event, number> =>
  Object.fromEntries(events.map((event) => [event, 0])) as Record<Event, number>

const toSnapshot = (counts: Record<Event, number>, store: StoreSnapshot): Snapshot => {
  const reads = counts.hits + counts.misses
  return { ...counts, hitRatio: reads === 0 ? 0 : counts.hits / reads, store }
}

/**
 * The tags of a namespace's series: one array per recorder, passed as is. Effect caches a metric's
 * hook per tags array (by identity, in a `WeakMap`), so the hit path skips the registry lookup
 * (`Metric.taggedWithLabels` would build a new array on every update and miss that cache); the
 * cached hooks go with the recorder. Nothing is kept per namespace at module level: a closed
 * namespace leaves only its series in Effect's registry (which never removes one).
 */
const tagsOf = (namespace: string): ReadonlyArray<MetricLabel.MetricLabel> => [
  MetricLabel.make("namespace", namespace)
]

/**
 * The recorder used when no `Metrics` service is provided: it feeds Effect's global `Metric`
 * registry only (so exporters still see every counter), without per-layer counts or snapshots.
 *
 * @example
 * ```ts
 * import { Metrics } from "@cache-aside/core"
 *
 * Metrics.globalRecorder("user").increment("hits")
 * ```
 *
 * @since 0.1.0
 */
export const globalRecorder = (namespace: string): Recorder => {
  const tags = tagsOf(namespace)
  return {
    increment: (event, by = 1) => counters[event].unsafeUpdate(by, tags),
    observeLoad: (millis) => loadDuration.unsafeUpdate(millis, tags)
  }
}

/** Closed namespaces kept readable in `snapshot(namespace)` (about 1 KB each). */
const maxClosed = 1_024

/**
 * What one service keeps per namespace, while a holder (a scoped recorder: a cache) is open or it
 * was asked for unscoped (`pinned`), then among the recently closed (`closed`, bounded). A
 * recorder writes through `state.counts`: once its namespace is folded into `retired`, that is
 * `retired`, so a late update (a closing cache's) still counts.
 */
interface NamespaceState {
  counts: Record<Event, number>
  holders: number
  pinned: boolean
  readonly recorder: Recorder
}

/** The namespaces of one `Metrics` service: open, recently closed, and the retired total. */
class Namespaces {
  private readonly open = new Map<string, NamespaceState>()
  /** Namespaces whose last holder closed, oldest first: `snapshot(namespace)` still reads them. */
  private readonly closed = new Map<string, NamespaceState>()
  /** The counts of the namespaces let go for good, kept in the total. */
  private readonly retired = emptyCounts()

  private stateOf(namespace: string): NamespaceState {
    const existing = this.open.get(namespace)
    if (existing !== undefined) return existing
    const reopened = this.closed.get(namespace)
    if (reopened !== undefined) {
      this.closed.delete(namespace)
      this.open.set(namespace, reopened)
      return reopened
    }
    const tags = tagsOf(namespace)
    const state: NamespaceState = {
      counts: emptyCounts(),
      holders: 0,
      pinned: false,
      recorder: {
        increment: (event, by = 1) => {
          state.counts[event] += by
          counters[event].unsafeUpdate(by, tags)
        },
        observeLoad: (millis) => loadDuration.unsafeUpdate(millis, tags)
      }
    }
    this.open.set(namespace, state)
    return state
  }

  /** A recorder kept for the service's life (`Metrics.recorder`). */
  pinned(namespace: string): Recorder {
    const state = this.stateOf(namespace)
    state.pinned = true
    return state.recorder
  }

  /** A recorder held until the scope closes (`Metrics.scopedRecorder`). */
  scoped(namespace: string): Effect.Effect<Recorder, never, Scope.Scope> {
    return Effect.map(
      Effect.acquireRelease(
        Effect.sync(() => {
          const state = this.stateOf(namespace)
          state.holders++
          return state
        }),
        (state) => Effect.sync(() => this.release(namespace, state))
      ),
      (state) => state.recorder
    )
  }

  private release(namespace: string, state: NamespaceState): void {
    state.holders--
    if (state.holders > 0 || state.pinned || this.open.get(namespace) !== state) return
    this.open.delete(namespace)
    this.closed.set(namespace, state)
    if (this.closed.size <= maxClosed) return
    const [oldest, evicted] = this.closed.entries().next().value!
    this.closed.delete(oldest)
    for (const event of events) this.retired[event] += evicted.counts[event]
    evicted.counts = this.retired
  }

  /** The counts of one namespace (open or recently closed), or of all of them. */
  counts(namespace: string | undefined): Record<Event, number> {
    if (namespace !== undefined) {
      return (this.open.get(namespace) ?? this.closed.get(namespace))?.counts ?? emptyCounts()
    }
    const total = { ...this.retired }
    for (const states of [this.open, this.closed]) {
      for (const state of states.values()) {
        for (const event of events) total[event] += state.counts[event]
      }
    }
    return total
  }
}

/** The stores of one `Metrics` service: a recorder and counts per store name. */
class Stores {
  private readonly states = new Map<string, StoreState>()
  private readonly recorders = new Map<string, StoreRecorder>()

  recorder(store: string): StoreRecorder {
    const existing = this.recorders.get(store)
    if (existing !== undefined) return existing
    const state = emptyStoreState()
    this.states.set(store, state)
    const tags = [MetricLabel.make("store", store)] // one array: see `tagsOf`
    const created: StoreRecorder = {
      increment: (event, by = 1) => {
        state.counts[event] += by
        storeCounters[event].unsafeUpdate(by, tags)
      },
      setBreaker: (value) => {
        state.breaker = value
        breakerGauge.unsafeUpdate(breakerLevel[value], tags)
      },
      setQueueSize: (size) => {
        state.queueSize = size
        queueGauge.unsafeUpdate(size, tags)
      },
      setQueueBytes: (bytes) => {
        state.queueBytes = bytes
        queueBytesGauge.unsafeUpdate(bytes, tags)
      }
    }
    this.recorders.set(store, created)
    return created
  }

  /** The snapshot of one store, or of all of them. */
  snapshot(store?: string): StoreSnapshot {
    if (store === undefined) return toStoreSnapshot(this.states.values())
    const state = this.states.get(store)
    return toStoreSnapshot(state === undefined ? [] : [state])
  }
}

/**
 * Makes a metrics service with counters of its own (two layers never share counts), which also
 * feeds the global Effect metrics tagged with `namespace`.
 *
 * @since 0.1.0
 */
export const make: Effect.Effect<Context.Tag.Service<Metrics>> = Effect.sync(() => {
  const namespaces = new Namespaces()
  const stores = new Stores()
  return Metrics.of({
    recorder: (namespace) => namespaces.pinned(namespace),
    scopedRecorder: (namespace) => namespaces.scoped(namespace),
    snapshot: (namespace) => Effect.sync(() => toSnapshot(namespaces.counts(namespace), stores.snapshot())),
    storeRecorder: (store) => stores.recorder(store),
    storeSnapshot: (store) => Effect.sync(() => stores.snapshot(store))
  })
})

/**
 * The recorder a cache of `namespace` uses, held until the scope closes: the `Metrics` service's
 * (`scopedRecorder`, or `recorder` for a service without it), or without a service one that feeds
 * Effect's global registry only (`globalRecorder`). What the service keeps for the namespace goes
 * when its last cache closes.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Metrics } from "@cache-aside/core"
 *
 * const program = Effect.gen(function* () {
 *   const recorder = yield* Metrics.namespaceRecorder("user")
 *   recorder.increment("hits")
 * }).pipe(Effect.scoped, Effect.provide(Metrics.layer))
 * ```
 *
 * @since 0.1.0
 */
export const namespaceRecorder = (namespace: string): Effect.Effect<Recorder, never, Scope.Scope> =>
  Effect.flatMap(Effect.serviceOption(Metrics), (metrics) => {
    if (Option.isNone(metrics)) return Effect.succeed(globalRecorder(namespace))
    const service = metrics.value
    return service.scopedRecorder === undefined
      ? Effect.succeed(service.recorder(namespace))
      : service.scopedRecorder(namespace)
  })

/**
 * @since 0.1.0
 */
export const layer: Layer.Layer<Metrics> = Layer.effect(Metrics, make)
