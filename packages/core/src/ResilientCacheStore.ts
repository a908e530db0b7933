/**
 * A `CacheStore` wrapper that keeps a slow, dead or flapping store from hurting the application.
 * It wraps any store (Redis, memory, a tiered store) and adds:
 *
 * - a time limit on every operation (a hung store answers `CacheUnavailable` after it);
 * - a circuit breaker: after a run of consecutive failures, calls fail at once without touching
 *   the store; after a cooldown the next call starts one probe in the background (calls keep
 *   failing at once meanwhile, so none waits on a store that may still hang), which closes the
 *   breaker or re-opens it for a longer (jittered, bounded) cooldown;
 * - no lost invalidations: a `delete` or `deletePattern` that cannot reach the store is queued
 *   (bounded, deduplicated per key or pattern) and succeeds for the caller; the queue is replayed in
 *   order before any read or write is served again, and by a background fiber;
 * - bounded, jittered retries of writes and invalidations (reads are not retried by default: a
 *   retry on the read path is latency).
 *
 * Since `CacheAside` falls back to the lookup on `CacheUnavailable` and drops failed cache writes,
 * wrapping the store is all an application has to do.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { CacheStore, CacheUnavailable, InvalidStoreOptions } from "./CacheStore.js"
import type { Operation } from "./CacheStore.js"
import * as Glob from "./Glob.js"
import { Metrics } from "./Metrics.js"

/**
 * The cause of a `CacheUnavailable` returned without calling the store, because the circuit
 * breaker is open (or half-open with its one probe in flight).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CacheStore, ResilientCacheStore } from "@cache-aside/core"
 *
 * const skippedByBreaker = (error: CacheStore.CacheUnavailable) =>
 *   error.cause instanceof ResilientCacheStore.CircuitOpen
 * ```
 *
 * @since 0.1.0
 */
export class CircuitOpen extends Schema.TaggedError<CircuitOpen>("@cache-aside/core/CircuitOpen")("CircuitOpen", {}) {
  override get message(): string {
    return "circuit breaker open: the store was not called"
  }
}

/**
 * A retry policy for store operations; `false` turns retries off.
 *
 * @since 0.1.0
 */
export type Retry = Schedule.Schedule<unknown, CacheUnavailable> | false

/**
 * @since 0.1.0
 */
export interface Options {
  /** Names the store in metrics (the `store` label), logs and `Metrics.storeSnapshot`. Default `"default"`. */
  readonly name?: string | undefined
  /** Time limit of one attempt of a store operation. Default 250 millis. */
  readonly timeout?: Duration.DurationInput | undefined
  /**
   * The inner store already fails every operation after `timeout` by itself (the Redis store does,
   * with the client's `commandTimeout`), so the wrapper adds no timer of its own per call: an
   * Effect timeout forks a fiber, which costs more than a cache hit. Default `false`.
   */
  readonly storeEnforcesTimeout?: boolean | undefined
  /** Time limit of one `deletePattern` attempt (it walks the keyspace in batches). Default 5 seconds. */
  readonly deletePatternTimeout?: Duration.DurationInput | undefined
  /** Consecutive failed operations that open the circuit breaker. Default 5. */
  readonly failureThreshold?: number | undefined
  /** How long the breaker stays open before a call starts a background probe. Default 1 second. */
  readonly cooldown?: Duration.DurationInput | undefined
  /** Each failed probe doubles the cooldown, up to this. Default 5 seconds. */
  readonly maxCooldown?: Duration.DurationInput | undefined
  /** Random fraction (0 to 1) taken off each cooldown, so that many processes do not probe in step. Default 0.2. */
  readonly cooldownJitter?: number | undefined
  /**
   * Retries of `get`, `getMany`, and of the lease operations of a miss (`setIfAbsent`,
   * `compareAndDelete`). Default `false`: on the read path a retry is latency, and the lookup is
   * the fallback.
   */
  readonly readRetry?: Retry | undefined
  /** Retries of `set` and `compareAndSet` (cache fills). Default: up to 2, exponential from 20 millis, jittered. */
  readonly writeRetry?: Retry | undefined
  /**
   * Retries of `delete` and `deletePattern` before they are queued. Default: up to 2, exponential
   * from 20 millis, jittered. Replays of the queue are not retried: the next read or background
   * round tries again.
   */
  readonly invalidationRetry?: Retry | undefined
  /** The most invalidations (distinct keys or patterns) kept for replay. Default 10,000. */
  readonly maxQueuedInvalidations?: number | undefined
  /** How often a background fiber replays queued invalidations. Default 1 second. */
  readonly replayInterval?: Duration.DurationInput | undefined
  /**
   * A glob pattern covering every key the caches on this store write, e.g. `"cache:*"` for
   * `CacheAside`'s default prefix. When the invalidation queue overflows, it is replaced by one
   * delete of this pattern: on recovery the whole cache is cleared and nothing stale survives.
   * Without it, an overflow drops the oldest queued invalidation (its entry, the oldest written,
   * is the nearest to expiring anyway), logged as an error and counted. Either way it is a
   * `queueOverflows` metric and an error log line.
   */
  readonly overflowPattern?: string | undefined
}

type Invalidation =
  | { readonly _tag: "Key"; readonly id: string; readonly key: string }
  | { readonly _tag: "Pattern"; readonly id: string; readonly pattern: string }

type KeyInvalidation = Extract<Invalidation, { readonly _tag: "Key" }>

type Breaker =
  | { readonly _tag: "Closed"; readonly failures: number }
  | { readonly _tag: "Open"; readonly until: number; readonly reopened: number }
  | { readonly _tag: "HalfOpen"; readonly probing: boolean; readonly reopened: number }

/** Keys per `delete` call when replaying the queue. */
const replayBatchSize = 500

/**
 * The default retry of writes and invalidations: up to two retries, exponential from 20 millis,
 * jittered.
 *
 * @example
 * ```ts
 * import { Schedule } from "effect"
 * import { ResilientCacheStore } from "@cache-aside/core"
 *
 * const patient = ResilientCacheStore.defaultRetry.pipe(Schedule.intersect(Schedule.recurs(5)))
 * ```
 *
 * @since 0.1.0
 */
export const defaultRetry: Schedule.Schedule<unknown, CacheUnavailable> = Schedule.exponential("20 millis").pipe(
  Schedule.jittered,
  Schedule.intersect(Schedule.recurs(2))
)

const invalid = (message: string) => Effect.fail(new InvalidStoreOptions({ message }))

const decodeDuration = (
  what: string,
  input: Duration.DurationInput,
  allowZero: boolean
): Effect.Effect<Duration.Duration, InvalidStoreOptions> => {
  const negative = (typeof input === "number" && !(input >= 0)) ||
    (typeof input === "bigint" && input < 0n) ||
    (typeof input === "string" && /^\s*-/.test(input))
  const decoded = negative ? Option.none() : Duration.decodeUnknown(input)
  if (Option.isNone(decoded) || (!allowZero && Duration.toMillis(decoded.value) <= 0)) {
    return invalid(`${what} must be a ${allowZero ? "non-negative" : "positive"} duration, got ${String(input)}`)
  }
  return Effect.succeed(decoded.value)
}

const positiveInteger = (what: string, value: number): Effect.Effect<number, InvalidStoreOptions> =>
  Number.isInteger(value) && value >= 1
    ? Effect.succeed(value)
    : invalid(`${what} must be a positive integer, got ${value}`)

/** Errors worth retrying: the store answered with an error. A timeout or an open breaker is not retried. */
const retryable = (error: CacheUnavailable): boolean =>
  !(error.cause instanceof CircuitOpen) && !Cause.isTimeoutException(error.cause)

/**
 * Wraps a store. Needs a `Scope`: the background replay fiber lives in it.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CacheStore, MemoryCacheStore, Metrics, ResilientCacheStore } from "@cache-aside/core"
 *
 * const program = Effect.gen(function* () {
 *   const inner = yield* MemoryCacheStore.make()
 *   const store = yield* ResilientCacheStore.make(inner, { timeout: "100 millis", failureThreshold: 3 })
 *   yield* store.delete(["cache:user:1:42"]) // never fails: queued if the store cannot be reached
 * }).pipe(Effect.scoped, Effect.provide(Metrics.layer))
 * ```
 *
 * @since 0.1.0
 */
export const make = (
  inner: CacheStore["Type"],
  options: Options = {}
): Effect.Effect<CacheStore["Type"], InvalidStoreOptions, Metrics | Scope.Scope> =>
  Effect.gen(function*() {
    const name = options.name ?? "default"
    const timeout = yield* decodeDuration("timeout", options.timeout ?? "250 millis", false)
    const patternTimeout = yield* decodeDuration(
      "deletePatternTimeout",
      options.deletePatternTimeout ?? "5 seconds",
      false
    )
    const failureThreshold = yield* positiveInteger("failureThreshold", options.failureThreshold ?? 5)
    const cooldownMillis = Duration.toMillis(yield* decodeDuration("cooldown", options.cooldown ?? "1 second", true))
    const maxCooldownMillis = Math.max(
      cooldownMillis,
      Duration.toMillis(yield* decodeDuration("maxCooldown", options.maxCooldown ?? "5 seconds", true))
    )
    const jitter = options.cooldownJitter ?? 0.2
    if (!(jitter >= 0 && jitter <= 1)) return yield* invalid(`cooldownJitter must be between 0 and 1, got ${jitter}`)
    const maxQueued = yield* positiveInteger("maxQueuedInvalidations", options.maxQueuedInvalidations ?? 10_000)
    const replayInterval = yield* decodeDuration("replayInterval", options.replayInterval ?? "1 second", false)
    const retryOf = (retry: Retry | undefined, fallback: Retry) => {
      const chosen = retry ?? fallback
      return chosen === false ? undefined : chosen
    }
    const readRetry = retryOf(options.readRetry, false)
    const writeRetry = retryOf(options.writeRetry, defaultRetry)
    const invalidationRetry = retryOf(options.invalidationRetry, defaultRetry)
    const overflowPattern = options.overflowPattern
    const overflowId = overflowPattern === undefined ? undefined : `p:${overflowPattern}`
    const overflowMatches = overflowPattern === undefined ? undefined : Glob.matcher(overflowPattern)

    const recorder = (yield* Metrics).storeRecorder(name)
    /** Read by the breaker's probe: any answer, even "absent", shows the store is back. */
    const probeKey = "cache-aside:breaker-probe"
    const clock = yield* Effect.clock
    const random = yield* Effect.random
    const scope = yield* Effect.scope
    const annotations = { store: name }
    const now = () => clock.unsafeCurrentTimeMillis()
    const log = (effect: Effect.Effect<void>) => Effect.annotateLogs(effect, annotations)

    // ---------------------------------------------------------------------------------------------
    // circuit breaker

    let breaker: Breaker = { _tag: "Closed", failures: 0 }
    recorder.setBreaker("closed")

    /** One rejection per operation, made once: failing fast must cost next to nothing. */
    const circuitOpen = new CircuitOpen()
    const rejections: { readonly [K in Operation]: CacheUnavailable } = {
      get: new CacheUnavailable({ operation: "get", cause: circuitOpen }),
      getMany: new CacheUnavailable({ operation: "getMany", cause: circuitOpen }),
      set: new CacheUnavailable({ operation: "set", cause: circuitOpen }),
      setIfAbsent: new CacheUnavailable({ operation: "setIfAbsent", cause: circuitOpen }),
      compareAndSet: new CacheUnavailable({ operation: "compareAndSet", cause: circuitOpen }),
      compareAndDelete: new CacheUnavailable({ operation: "compareAndDelete", cause: circuitOpen }),
      delete: new CacheUnavailable({ operation: "delete", cause: circuitOpen }),
      deletePattern: new CacheUnavailable({ operation: "deletePattern", cause: circuitOpen })
    }

    const reject = (operation: Operation) => {
      recorder.increment("rejected")
      return Effect.fail(rejections[operation])
    }

    /**
     * Once the cooldown has passed, probes the store in the background (a read of a key nobody
     * writes): no request waits on a store that may still hang; meanwhile calls are rejected at once.
     */
    const startProbe = (operation: Operation): Effect.Effect<never, CacheUnavailable> => {
      breaker = { _tag: "HalfOpen", probing: true, reopened: breaker._tag === "Closed" ? 0 : breaker.reopened }
      recorder.setBreaker("half-open")
      const probe = options.storeEnforcesTimeout === true
        ? inner.get(probeKey)
        : Effect.timeoutFail(inner.get(probeKey), {
          duration: timeout,
          onTimeout: () =>
            new CacheUnavailable({
              operation: "get",
              cause: new Cause.TimeoutException(`the store did not answer the probe within ${Duration.format(timeout)}`)
            })
        })
      return log(Effect.logInfo("cache-aside: circuit breaker half-open, probing the store")).pipe(
        Effect.zipRight(Effect.forkIn(Effect.onExit(probe, (exit) => settle(true, exit)), scope)),
        Effect.zipRight(reject(operation))
      )
    }

    /** While the breaker is not closed: rejects the call, starting the probe once the cooldown has passed. */
    const rejectOrProbe = (operation: Operation): Effect.Effect<never, CacheUnavailable> =>
      Effect.suspend(() => {
        switch (breaker._tag) {
          case "Closed": // closed meanwhile by a probe: this call was already refused
            return reject(operation)
          case "Open":
            return now() < breaker.until ? reject(operation) : startProbe(operation)
          case "HalfOpen":
            // a probe is running; or it was interrupted (the store's scope closing): start another
            return breaker.probing ? reject(operation) : startProbe(operation)
        }
      })

    const open = (reopened: number, r: number, reason: string): Effect.Effect<void> => {
      const base = Math.min(maxCooldownMillis, cooldownMillis * 2 ** Math.min(reopened, 52))
      const wait = Math.max(0, Math.round(base * (1 - jitter * r)))
      breaker = { _tag: "Open", until: now() + wait, reopened }
      recorder.setBreaker("open")
      recorder.increment("breakerOpened")
      return log(
        Effect.logWarning(`cache-aside: circuit breaker opened (${reason}); store calls fail fast for ${wait} ms`)
      )
    }

    /** Feeds an attempt's outcome to the breaker. */
    const settle = (probe: boolean, exit: Exit.Exit<unknown, CacheUnavailable>): Effect.Effect<void> => {
      if (Exit.isSuccess(exit)) {
        if (probe) {
          breaker = { _tag: "Closed", failures: 0 }
          recorder.setBreaker("closed")
          recorder.increment("breakerClosed")
          return log(Effect.logInfo("cache-aside: circuit breaker closed, store calls resume"))
        }
        if (breaker._tag === "Closed" && breaker.failures > 0) breaker = { _tag: "Closed", failures: 0 }
        return Effect.void
      }
      const failure = Cause.failureOption(exit.cause)
      if (Option.isNone(failure)) {
        // interrupted or a defect: not an answer about the store's health, but free the probe slot
        if (probe && breaker._tag === "HalfOpen") breaker = { ...breaker, probing: false }
        return Effect.void
      }
      recorder.increment("failures")
      // ours or the inner store's own (the Redis client's commandTimeout)
      if (Cause.isTimeoutException(failure.value.cause)) recorder.increment("timeouts")
      // an error reply (out of memory, read-only replica, ...): the store is up and answers at once,
      // so it costs no latency and is no reason to skip the store for the operations that still work
      if (failure.value.replied === true) return settle(probe, Exit.void)
      return Effect.flatMap(random.next, (r) =>
        Effect.suspend(() => {
          if (probe && breaker._tag === "HalfOpen") return open(breaker.reopened + 1, r, "the probe failed")
          if (breaker._tag !== "Closed") return Effect.void
          const failures = breaker.failures + 1
          if (failures < failureThreshold) {
            breaker = { _tag: "Closed", failures }
            return Effect.void
          }
          return open(0, r, `${failures} consecutive failures`)
        }))
    }

    /** One store call under the breaker, the time limit and the retry policy. */
    /** The outcome of a call the closed breaker let through. Made once: this is on the hit path. */
    const closedOutcome = {
      onFailure: (cause: Cause.Cause<CacheUnavailable>) =>
        Effect.zipRight(settle(false, Exit.failCause(cause)), Effect.failCause(cause)),
      onSuccess: (value: unknown) => {
        if (breaker._tag === "Closed" && breaker.failures > 0) breaker = { _tag: "Closed", failures: 0 }
        return Effect.succeed(value)
      }
    }
    const throughClosed = <A>(effect: Effect.Effect<A, CacheUnavailable>): Effect.Effect<A, CacheUnavailable> =>
      Effect.matchCauseEffect(effect, closedOutcome) as Effect.Effect<A, CacheUnavailable>

    const guarded = <A>(
      operation: Operation,
      effect: Effect.Effect<A, CacheUnavailable>,
      limit: Duration.Duration,
      retry: Schedule.Schedule<unknown, CacheUnavailable> | undefined
    ): Effect.Effect<A, CacheUnavailable> => {
      const onTimeout = () => {
        return new CacheUnavailable({
          operation,
          cause: new Cause.TimeoutException(`the store did not answer ${operation} within ${Duration.format(limit)}`)
        })
      }
      const limited = options.storeEnforcesTimeout === true && limit === timeout
        ? effect
        : Effect.timeoutFail(effect, { duration: limit, onTimeout })
      const attempt = Effect.suspend(() =>
        // only a closed breaker lets calls through (probes run in the background)
        breaker._tag === "Closed" ? throughClosed(limited) : rejectOrProbe(operation)
      )
      if (retry === undefined) return attempt
      return Effect.suspend(() => {
        let attempts = 0
        const counted = Effect.suspend(() => {
          if (attempts++ > 0) recorder.increment("retries")
          return attempt
        })
        return Effect.retry(counted, { schedule: retry, while: retryable })
      })
    }

    // ---------------------------------------------------------------------------------------------
    // invalidation queue

    /** Insertion-ordered: FIFO, and a re-queued key or pattern moves to the end. */
    const queue = new Map<string, Invalidation>()

    const enqueue = (entries: ReadonlyArray<Invalidation>, error: CacheUnavailable): Effect.Effect<void> =>
      Effect.suspend(() => {
        const wasEmpty = queue.size === 0
        const covered = overflowId !== undefined && queue.has(overflowId)
        let queued = 0
        let dropped = 0
        let collapsed = false
        for (const entry of entries) {
          // once the queue collapsed into the overflow pattern, the keys it covers need no entry
          if (covered && entry._tag === "Key" && overflowMatches!(entry.key)) continue
          queue.delete(entry.id)
          queue.set(entry.id, entry)
          queued++
          if (queue.size <= maxQueued) continue
          if (overflowPattern !== undefined) {
            dropped += queue.size - 1
            queue.clear()
            queue.set(overflowId!, { _tag: "Pattern", id: overflowId!, pattern: overflowPattern })
            collapsed = true
          } else {
            queue.delete(queue.keys().next().value!)
            dropped++
          }
        }
        if (queued > 0) recorder.increment("invalidationsQueued", queued)
        recorder.setQueueSize(queue.size)
        // a warning when the queue starts, then quieter: during an outage every invalidation lands here
        const message = `cache-aside: invalidation could not reach the store; queued for replay (${queue.size} queued)`
        const queuedLog = log(
          wasEmpty ? Effect.logWarning(message, error.message) : Effect.logDebug(message, error.message)
        )
        if (dropped === 0 && !collapsed) return queuedLog
        recorder.increment("queueOverflows", Math.max(1, dropped))
        return Effect.zipRight(
          queuedLog,
          log(Effect.logError(
            collapsed
              ? `cache-aside: invalidation queue full (${maxQueued}); replaced by one delete of "${overflowPattern}", ` +
                "the whole cache will be cleared when the store answers"
              : `cache-aside: invalidation queue full (${maxQueued}); ${dropped} oldest invalidation(s) dropped, ` +
                "their keys may be served stale until they expire (set overflowPattern to clear the cache instead)"
          ))
        )
      })

    const replayed = (entries: ReadonlyArray<Invalidation>) => {
      for (const entry of entries) {
        // an entry queued again meanwhile is a newer invalidation: it stays
        if (queue.get(entry.id) === entry) queue.delete(entry.id)
      }
      recorder.increment("invalidationsReplayed", entries.length)
      recorder.setQueueSize(queue.size)
      return entries.length
    }

    /** Replays the head of the queue: one pattern, or a batch of consecutive keys. How many; 0 when empty. */
    const replayHead: Effect.Effect<number, CacheUnavailable> = Effect.suspend(() => {
      const head = queue.values().next()
      if (head.done === true) return Effect.succeed(0)
      const first = head.value
      if (first._tag === "Pattern") {
        // a replay is not retried here: the next read or the background round tries again, and a
        // retry would make every read wait while the store answers errors
        return guarded("deletePattern", inner.deletePattern(first.pattern), patternTimeout, undefined).pipe(
          Effect.map(() => replayed([first]))
        )
      }
      const batch: Array<KeyInvalidation> = []
      for (const entry of queue.values()) {
        if (entry._tag !== "Key" || batch.length >= replayBatchSize) break
        batch.push(entry)
      }
      return guarded("delete", inner.delete(batch.map((entry) => entry.key)), timeout, undefined).pipe(
        Effect.map(() => replayed(batch))
      )
    })

    const replayAll = (total: number): Effect.Effect<number, CacheUnavailable> =>
      Effect.flatMap(replayHead, (count) => count === 0 ? Effect.succeed(total) : replayAll(total + count))

    let draining: Deferred.Deferred<void, CacheUnavailable> | undefined

    /**
     * Replays the whole queue, once at a time: callers that arrive during a replay wait for it.
     * The replay runs in the store's scope, so an interrupted caller does not cut it short.
     */
    const drain: Effect.Effect<void, CacheUnavailable> = Effect.suspend(() => {
      if (queue.size === 0) return Effect.void
      if (draining !== undefined) return Deferred.await(draining)
      const deferred = Deferred.unsafeMake<void, CacheUnavailable>(FiberId.none)
      draining = deferred
      const run = replayAll(0).pipe(
        Effect.tap((total) => log(Effect.logInfo(`cache-aside: replayed ${total} queued invalidation(s)`))),
        Effect.tapError((error) =>
          error.cause instanceof CircuitOpen
            ? Effect.void
            : Effect.zipRight(
              Effect.sync(() => recorder.increment("replayFailures")),
              log(Effect.logDebug("cache-aside: invalidation replay failed; will retry", error.message))
            )
        ),
        Effect.asVoid,
        Effect.onExit((exit) => {
          draining = undefined
          return Deferred.done(deferred, exit)
        })
      )
      return Effect.zipRight(Effect.forkIn(run, scope), Deferred.await(deferred))
    })

    /**
     * Reads and writes wait for queued invalidations: the store must not serve or keep what they
     * remove. They wait at most one operation timeout (the replay goes on in the background); past
     * it, or when the replay fails, they fail, and the read path falls back to the lookup.
     */
    const afterInvalidations = <A>(operation: Operation, effect: Effect.Effect<A, CacheUnavailable>) =>
      Effect.suspend(() =>
        queue.size === 0 ? effect : drain.pipe(
          Effect.mapError((cause) => new CacheUnavailable({ operation, cause })),
          Effect.timeoutFail({
            duration: timeout,
            onTimeout: () =>
              new CacheUnavailable({
                operation,
                cause: new Cause.TimeoutException(
                  `queued invalidations were not replayed within ${Duration.format(timeout)}`
                )
              })
          }),
          Effect.zipRight(effect)
        )
      )

    // replays without waiting for traffic (`drain` counts a failure; the next round tries again)
    yield* Effect.forkScoped(
      Effect.forever(Effect.zipRight(Effect.sleep(replayInterval), Effect.exit(drain)))
    )

    const keyEntry = (key: string): Invalidation => ({ _tag: "Key", id: `k:${key}`, key })
    const droppedWrite = () => Effect.sync(() => recorder.increment("droppedWrites"))

    return CacheStore.of({
      get: (key) =>
        // the hit path: nothing queued, breaker closed, no retry, no timer of ours: one step
        options.storeEnforcesTimeout === true && readRetry === undefined
          ? Effect.suspend(() =>
            queue.size === 0 && breaker._tag === "Closed"
              ? throughClosed(inner.get(key))
              : afterInvalidations("get", guarded("get", inner.get(key), timeout, readRetry))
          )
          : afterInvalidations("get", guarded("get", inner.get(key), timeout, readRetry)),
      getMany: (keys) =>
        keys.length === 0
          ? Effect.succeed([])
          : afterInvalidations("getMany", guarded("getMany", inner.getMany(keys), timeout, readRetry)),
      set: (key, value, ttl) =>
        afterInvalidations("set", guarded("set", inner.set(key, value, ttl), timeout, writeRetry)).pipe(
          Effect.tapError(droppedWrite)
        ),
      setIfAbsent: (key, value, ttl) =>
        afterInvalidations(
          "setIfAbsent",
          guarded("setIfAbsent", inner.setIfAbsent(key, value, ttl), timeout, readRetry)
        ).pipe(Effect.tapError(droppedWrite)), // a refused lease means the fill is not written
      compareAndSet: (key, expected, value, ttl) =>
        afterInvalidations(
          "compareAndSet",
          guarded("compareAndSet", inner.compareAndSet(key, expected, value, ttl), timeout, writeRetry)
        ).pipe(Effect.tapError(droppedWrite)),
      // releases a lease: a conditional delete that cannot bring old data back, so it neither waits
      // for queued invalidations nor is queued when it fails (the lease expires on its own)
      compareAndDelete: (key, expected) =>
        guarded("compareAndDelete", inner.compareAndDelete(key, expected), timeout, readRetry),
      delete: (keys) =>
        keys.length === 0 ? Effect.succeed(0) : guarded("delete", inner.delete(keys), timeout, invalidationRetry).pipe(
          Effect.catchAll((error) => Effect.as(enqueue(keys.map(keyEntry), error), 0))
        ),
      deletePattern: (pattern) =>
        guarded("deletePattern", inner.deletePattern(pattern), patternTimeout, invalidationRetry).pipe(
          Effect.catchAll((error) => Effect.as(enqueue([{ _tag: "Pattern", id: `p:${pattern}`, pattern }], error), 0))
        )
    })
  })

/**
 * Wraps the store of another layer. The other services that layer provides pass through (so
 * `ResilientCacheStore.layer(FaultInjection.layer(store))` still provides `FaultInjection`).
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { MemoryCacheStore, Metrics, ResilientCacheStore } from "@cache-aside/core"
 *
 * const StoreLive = ResilientCacheStore.layer(MemoryCacheStore.layer(), {
 *   timeout: "100 millis",
 *   overflowPattern: "cache:*"
 * }).pipe(Layer.provideMerge(Metrics.layer))
 * ```
 *
 * @since 0.1.0
 */
export const layer = <ROut, E, R>(
  inner: Layer.Layer<CacheStore | ROut, E, R>,
  options: Options = {}
): Layer.Layer<CacheStore | ROut, E | InvalidStoreOptions, R | Metrics> =>
  Layer.flatMap(inner, (context) =>
    Layer.scopedContext(
      Effect.map(make(Context.get(context, CacheStore), options), (store) => Context.add(context, CacheStore, store))
    ))
