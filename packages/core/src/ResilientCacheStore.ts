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
 *   (bounded, deduplicated per key or pattern) and succeeds for the caller; a background fiber
 *   replays the queue in order; a read or write of a key that a queued invalidation covers first
 *   deletes that key itself (one `delete`), so it never sees what the invalidation removes and never
 *   waits for the rest of the queue (a long pattern replay blocks no read);
 * - bounded, jittered retries of writes and invalidations (reads are not retried by default: a
 *   retry on the read path is latency).
 *
 * Since `CacheAside` falls back to the lookup on `CacheUnavailable` and drops failed cache writes,
 * wrapping the store is all an application has to do.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { CacheStore, InvalidStoreOptions } from "./CacheStore.js"
import type { CacheUnavailable } from "./CacheStore.js"
import * as internal from "./internal/resilientStore.js"
import * as validate from "./internal/validate.js"
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
  /**
   * Time limit of one `deletePattern` attempt (it walks the keyspace in batches). Default 5 seconds.
   * A queued pattern whose replay timed out gets twice the limit on its next attempt (up to 64
   * times), so a keyspace too large for it is still cleared eventually; no read waits for it.
   */
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
  /**
   * The most memory the queued invalidations hold, in bytes: keys can be long (up to 1 MB), so the
   * count alone does not bound it. Estimated as two bytes per character of each string the queue
   * keeps (a queued key is held twice: as the key and as its entry's id) plus 128 bytes per entry,
   * which over-counts ASCII keys. Reaching it is an overflow, as reaching `maxQueuedInvalidations`
   * is (see `overflowPattern`). Default 16 MiB (16,777,216).
   */
  readonly maxQueuedInvalidationBytes?: number | undefined
  /**
   * How often a background fiber replays queued invalidations. Default 1 second. Reads and writes
   * of keys a queued invalidation covers do not wait for the round: they delete their own keys first
   * (or wait, at most one `timeout`, for a queued pattern that matches them).
   */
  readonly replayInterval?: Duration.DurationInput | undefined
  /**
   * A glob pattern covering every key the caches on this store write, e.g. `"cache:*"` for
   * `CacheAside`'s default prefix. When the invalidation queue overflows, it is replaced by one
   * delete of this pattern: on recovery the whole cache is cleared and nothing stale survives.
   * An overflow is either bound reached (`maxQueuedInvalidations` or `maxQueuedInvalidationBytes`).
   * Without it, an overflow drops the oldest queued invalidation (its entry, the oldest written,
   * is the nearest to expiring anyway), logged as an error and counted. Either way it is a
   * `queueOverflows` metric and an error log line.
   */
  readonly overflowPattern?: string | undefined
}

/** The longest time limit a timer can hold (Node's `setTimeout` and Effect's clock: 2^31 - 1 ms). */
const maxTimerMillis = 2 ** 31 - 1

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

/** The default of `maxQueuedInvalidationBytes`: 16 MiB. */
const defaultMaxQueuedBytes = 16 * 1024 * 1024

const isRetry = (retry: unknown): retry is Retry => retry === false || Schedule.isSchedule(retry)

/** Validates the options (every duration decoded once, zero timeouts rejected); safe defaults first. */
const configOf = (options: Options): Either.Either<internal.Config, string> =>
  Either.gen(function*() {
    yield* validate.record("options", options)
    const timer = { min: 1, max: maxTimerMillis }
    const name = options.name ?? "default"
    if (typeof name !== "string" || name.length === 0) return yield* Either.left("name must be a non-empty string")
    const timeout = yield* validate.duration("timeout", options.timeout ?? "250 millis", timer)
    const patternTimeout = yield* validate.duration(
      "deletePatternTimeout",
      options.deletePatternTimeout ?? "5 seconds",
      timer
    )
    const failureThreshold = yield* validate.integer("failureThreshold", options.failureThreshold ?? 5, 1)
    const cooldown = yield* validate.duration("cooldown", options.cooldown ?? "1 second", { max: maxTimerMillis })
    const maxCooldown = yield* validate.duration("maxCooldown", options.maxCooldown ?? "5 seconds", {
      max: maxTimerMillis
    })
    const jitter = yield* validate.fraction("cooldownJitter", options.cooldownJitter ?? 0.2, 0, 1)
    const maxQueued = yield* validate.integer("maxQueuedInvalidations", options.maxQueuedInvalidations ?? 10_000, 1)
    const maxQueuedBytes = yield* validate.integer(
      "maxQueuedInvalidationBytes",
      options.maxQueuedInvalidationBytes ?? defaultMaxQueuedBytes,
      1
    )
    const replayInterval = yield* validate.duration("replayInterval", options.replayInterval ?? "1 second", timer)
    for (const what of ["readRetry", "writeRetry", "invalidationRetry"] as const) {
      const retry = options[what]
      if (retry !== undefined && !isRetry(retry)) return yield* Either.left(`${what} must be a Schedule or false`)
    }
    const retryOf = (retry: Retry | undefined, fallback: Retry) => {
      const chosen = retry ?? fallback
      return chosen === false ? undefined : chosen
    }
    const overflowPattern = options.overflowPattern
    if (overflowPattern !== undefined && (typeof overflowPattern !== "string" || overflowPattern.length === 0)) {
      return yield* Either.left("overflowPattern must be a non-empty glob pattern")
    }
    return {
      name,
      timeout,
      patternTimeout,
      failureThreshold,
      cooldownMillis: Duration.toMillis(cooldown),
      maxCooldownMillis: Math.max(Duration.toMillis(cooldown), Duration.toMillis(maxCooldown)),
      jitter,
      maxQueued,
      maxQueuedBytes,
      replayInterval,
      readRetry: retryOf(options.readRetry, false),
      writeRetry: retryOf(options.writeRetry, defaultRetry),
      invalidationRetry: retryOf(options.invalidationRetry, defaultRetry),
      overflowPattern,
      storeEnforcesTimeout: options.storeEnforcesTimeout === true
    }
  })

/**
 * The name of every option of `ResilientCacheStore.layer` (for `OptionNames.check`): a layer that
 * takes these options inside its own (`RedisCacheStore.layer`'s `resilience`) checks them with it.
 *
 * @example
 * ```ts
 * import { OptionNames, ResilientCacheStore } from "@cache-aside/core"
 *
 * OptionNames.check("resilience", { failureTreshold: 3 }, ResilientCacheStore.optionNames)
 * // Either.left('unknown option "resilience.failureTreshold"; did you mean "resilience.failureThreshold"?')
 * ```
 *
 * @since 0.1.0
 */
export const optionNames: { readonly [K in keyof Required<Options>]: true } = {
  name: true,
  timeout: true,
  storeEnforcesTimeout: true,
  deletePatternTimeout: true,
  failureThreshold: true,
  cooldown: true,
  maxCooldown: true,
  cooldownJitter: true,
  readRetry: true,
  writeRetry: true,
  invalidationRetry: true,
  maxQueuedInvalidations: true,
  maxQueuedInvalidationBytes: true,
  replayInterval: true,
  overflowPattern: true
}

/**
 * The options checked, before any store is touched: `InvalidStoreOptions` for a value that cannot
 * work or a name that misspells an option; the keys that are no option and misspell none are
 * logged once and ignored.
 */
const checked = (options: Options): Effect.Effect<internal.Config, InvalidStoreOptions> =>
  Effect.gen(function*() {
    const unknown = Either.flatMap(validate.record("options", options), (fields) =>
      validate.known(undefined, fields, optionNames))
    if (Either.isLeft(unknown)) {
      return yield* new InvalidStoreOptions({ message: unknown.left })
    }
    const config = configOf(options)
    if (Either.isLeft(config)) {
      return yield* new InvalidStoreOptions({ message: config.left })
    }
    if (unknown.right.length > 0) {
      // not a typo of an option (those are refused): a field of a larger config spread in, say
      yield* Effect.logWarning(
        `cache-aside: options ResilientCacheStore.make does not know, ignored: ${unknown.right.join(", ")}`
      ).pipe(Effect.annotateLogs({ store: config.right.name }))
    }
    return config.right
  })

/** The wrapper over `inner`, with checked options. */
const makeChecked = (
  inner: CacheStore["Type"],
  config: internal.Config
): Effect.Effect<CacheStore["Type"], never, Metrics | Scope.Scope> =>
  Effect.gen(function*() {
    const clock = yield* Effect.clock
    const resilient = new internal.ResilientStore(config, {
      inner,
      circuitOpen: new CircuitOpen(),
      isCircuitOpen: (cause) => cause instanceof CircuitOpen,
      recorder: (yield* Metrics).storeRecorder(config.name),
      now: () => clock.unsafeCurrentTimeMillis(),
      random: yield* Effect.random,
      scope: yield* Effect.scope
    })
    // replays without waiting for traffic; the rounds live in the store's scope
    yield* Effect.forkScoped(resilient.replayRounds())
    return resilient.store()
  })

/**
 * Wraps a store. Needs a `Scope`: the background replay fiber and the breaker's probes live in it.
 * Options that cannot work fail with `InvalidStoreOptions`, and so does an option name that
 * misspells one (`failureTreshold`); other keys it does not know are logged at WARN and ignored.
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
  Effect.flatMap(checked(options), (config) => makeChecked(inner, config))

/**
 * Wraps the store of another layer. The other services that layer provides pass through (so
 * `ResilientCacheStore.layer(FaultInjection.layer(store))` still provides `FaultInjection`). The
 * options are checked as `make` checks them, before the inner layer is built.
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
  // the options first: a bad one fails before the inner layer is built (before it connects, say)
  Layer.unwrapEffect(Effect.map(checked(options), (config) =>
    Layer.flatMap(inner, (context) =>
      Layer.scopedContext(
        Effect.map(
          makeChecked(Context.get(context, CacheStore), config),
          (store) => Context.add(context, CacheStore, store)
        )
      ))))
