/**
 * The machinery of `ResilientCacheStore`: one class whose methods share the breaker, the
 * invalidation queue and the replay in flight through fields. Every store call goes through
 * `guarded` (time limit, breaker, retry); reads and writes through `afterInvalidations` (the
 * queued invalidations that cover their keys first); the queue is replayed by `drain`, one replay
 * at a time, in the store's scope.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import type * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { CacheStore, CacheUnavailable, patternRefusal } from "../CacheStore.js"
import type { Operation } from "../CacheStore.js"
import type { StoreRecorder } from "../Metrics.js"
import { Breaker } from "./breaker.js"
import { InvalidationQueue } from "./invalidationQueue.js"
import type { Claim, Invalidation, KeyInvalidation, PatternInvalidation } from "./invalidationQueue.js"

/** @internal */
export type RetryPolicy = Schedule.Schedule<unknown, CacheUnavailable> | undefined

/**
 * Validated options.
 *
 * @internal
 */
export interface Config {
  readonly name: string
  readonly timeout: Duration.Duration
  readonly patternTimeout: Duration.Duration
  readonly failureThreshold: number
  readonly cooldownMillis: number
  readonly maxCooldownMillis: number
  readonly jitter: number
  readonly maxQueued: number
  readonly maxQueuedBytes: number
  readonly replayInterval: Duration.Duration
  readonly readRetry: RetryPolicy
  readonly writeRetry: RetryPolicy
  readonly invalidationRetry: RetryPolicy
  readonly overflowPattern: string | undefined
  readonly storeEnforcesTimeout: boolean
}

/** @internal */
export interface Environment {
  readonly inner: CacheStore["Type"]
  /** The cause of the breaker's refusals (`ResilientCacheStore.CircuitOpen`): one instance. */
  readonly circuitOpen: unknown
  /** Whether a cause is a breaker's refusal (this one's, or a wrapped store's). */
  readonly isCircuitOpen: (cause: unknown) => boolean
  readonly recorder: StoreRecorder
  readonly now: () => number
  readonly random: Effect.Effect.Success<typeof Effect.random>
  readonly scope: Scope.Scope
}

/** Keys per `delete` call when replaying the queue. */
const replayBatchSize = 500

/** A pattern replay that timed out gets a longer limit next time, up to this many times the first. */
const maxPatternTimeoutFactor = 64

/** Read by the breaker's probe: any answer, even "absent", shows the store is back. */
const probeKey = "cache-aside:breaker-probe"

const isPattern = (
  head: PatternInvalidation | ReadonlyArray<KeyInvalidation>
): head is PatternInvalidation => (head as PatternInvalidation)._tag === "Pattern"

/** @internal */
export class ResilientStore {
  readonly breaker: Breaker
  readonly queue: InvalidationQueue
  /** The replay in flight: operations that wait for it share it; `slow` once one gave up waiting. */
  private draining: { readonly done: Deferred.Deferred<void, CacheUnavailable>; slow: boolean } | undefined
  private readonly log: (effect: Effect.Effect<void>) => Effect.Effect<void>

  constructor(readonly config: Config, readonly env: Environment) {
    const annotations = { store: config.name }
    this.log = (effect) => Effect.annotateLogs(effect, annotations)
    const probe = env.inner.get(probeKey)
    this.breaker = new Breaker({
      circuitOpen: env.circuitOpen,
      failureThreshold: config.failureThreshold,
      cooldownMillis: config.cooldownMillis,
      maxCooldownMillis: config.maxCooldownMillis,
      jitter: config.jitter,
      probe: config.storeEnforcesTimeout ? probe : this.limit("get", probe, config.timeout),
      recorder: env.recorder,
      now: env.now,
      random: env.random,
      scope: env.scope,
      log: this.log
    })
    this.queue = new InvalidationQueue({
      maxQueued: config.maxQueued,
      maxBytes: config.maxQueuedBytes,
      overflowPattern: config.overflowPattern,
      recorder: env.recorder,
      log: this.log
    })
  }

  /** Errors worth retrying: the store answered with an error. A timeout or an open breaker is not retried. */
  private readonly retryable = (error: CacheUnavailable): boolean =>
    !this.env.isCircuitOpen(error.cause) && !Cause.isTimeoutException(error.cause)

  limit<A>(
    operation: Operation,
    effect: Effect.Effect<A, CacheUnavailable>,
    duration: Duration.Duration
  ): Effect.Effect<A, CacheUnavailable> {
    return Effect.timeoutFail(effect, {
      duration,
      onTimeout: () =>
        new CacheUnavailable({
          operation,
          cause: new Cause.TimeoutException(`the store did not answer ${operation} within ${Duration.format(duration)}`)
        })
    })
  }

  /** One store call under the breaker, the time limit and the retry policy. */
  guarded<A>(
    operation: Operation,
    effect: Effect.Effect<A, CacheUnavailable>,
    duration: Duration.Duration,
    retry: RetryPolicy
  ): Effect.Effect<A, CacheUnavailable> {
    const limited = this.config.storeEnforcesTimeout && duration === this.config.timeout
      ? effect
      : this.limit(operation, effect, duration)
    const first = this.breaker.call(operation, limited)
    return retry === undefined ? first : Effect.catchAll(first, this.retryAfter(operation, limited, retry, undefined))
  }

  /**
   * What follows a first attempt's failure: more attempts of `limited` under the breaker as `retry`
   * allows, or the failure as it is; `gaveUp` on the final failure. The schedule is driven only
   * after a first failure (its driver costs more CPU than a write that succeeds): it is handed that
   * failure first, as `Effect.retry` over the whole would be.
   */
  private retryAfter<A>(
    operation: Operation,
    limited: Effect.Effect<A, CacheUnavailable>,
    retry: Schedule.Schedule<unknown, CacheUnavailable>,
    gaveUp: (() => Effect.Effect<void>) | undefined
  ): (failure: CacheUnavailable) => Effect.Effect<A, CacheUnavailable> {
    return (failure) => {
      if (!this.retryable(failure)) {
        return gaveUp === undefined ? Effect.fail(failure) : Effect.zipRight(gaveUp(), Effect.fail(failure))
      }
      const { recorder } = this.env
      const attempt = this.breaker.call(operation, limited)
      let replayed = false
      const again = Effect.suspend(() => {
        if (!replayed) {
          replayed = true
          return Effect.fail(failure)
        }
        recorder.increment("retries")
        return attempt
      })
      const retried = Effect.retry(again, { schedule: retry, while: this.retryable })
      return gaveUp === undefined ? retried : Effect.tapError(retried, gaveUp)
    }
  }

  /**
   * The operation's own failure for a failed delete of its claimed keys: the breaker's rejection
   * as it is (so the read path logs one line per outage, whatever is queued), any other error
   * with its cause, never nested.
   */
  private claimFailed(
    operation: Operation,
    error: CacheUnavailable,
    counted = false
  ): Effect.Effect<never, CacheUnavailable> {
    if (this.env.isCircuitOpen(error.cause)) return this.breaker.reject(operation)
    if (!counted) this.env.recorder.increment("replayFailures")
    return Effect.fail(
      new CacheUnavailable({
        operation,
        cause: error.cause,
        ...(error.replied === undefined ? {} : { replied: error.replied })
      })
    )
  }

  private deleteClaimed(operation: Operation, claim: Claim): Effect.Effect<void, CacheUnavailable> {
    return this.guarded("delete", this.env.inner.delete(claim.keys), this.config.timeout, undefined).pipe(
      Effect.matchEffect({
        onFailure: (error) => this.claimFailed(operation, error),
        onSuccess: () => this.queue.settle(claim)
      })
    )
  }

  /** Deletes the keys of the operation that queued invalidations still cover, then runs it. */
  private afterClaimed<A>(
    operation: Operation,
    keys: ReadonlyArray<string>,
    effect: Effect.Effect<A, CacheUnavailable>
  ): Effect.Effect<A, CacheUnavailable> {
    return Effect.suspend(() => {
      const claim = this.queue.claim(keys)
      return claim === undefined ? effect : Effect.zipRight(this.deleteClaimed(operation, claim), effect)
    })
  }

  /**
   * Reads and writes of keys that queued invalidations cover make sure those are applied first
   * (while the breaker is open they are refused by it, as every call is): the store must not serve
   * or keep what the invalidations remove. Keys no queued invalidation covers go straight through.
   *
   * Queued keys are deleted by the operation itself (one `delete`). A queued pattern that matches
   * a key is waited for (the replay runs in the background; the wait is at most one operation
   * timeout), so that the fill that follows is not deleted by the replay later; a replay that takes
   * longer is marked slow, and from then on reads delete their own keys instead of waiting for it.
   */
  afterInvalidations<A>(
    operation: Operation,
    keys: ReadonlyArray<string>,
    effect: Effect.Effect<A, CacheUnavailable>
  ): Effect.Effect<A, CacheUnavailable> {
    return Effect.suspend(() => {
      if (this.queue.size === 0 || !this.breaker.isClosed) return effect
      const claim = this.queue.claim(keys)
      if (claim === undefined) return effect
      if (!claim.patterns || this.draining?.slow === true) {
        return Effect.zipRight(this.deleteClaimed(operation, claim), effect)
      }
      return this.drain.pipe(
        Effect.timeoutTo({ duration: this.config.timeout, onSuccess: () => true, onTimeout: () => false }),
        Effect.matchEffect({
          // the replay counted its own failure (see `drain`)
          onFailure: (error) => this.claimFailed(operation, error, true),
          onSuccess: (replayed) => {
            if (!replayed && this.draining !== undefined) this.draining.slow = true
            return this.afterClaimed(operation, keys, effect)
          }
        })
      )
    })
  }

  /** Replays the queue from its head until it is empty or a replay fails (the next round tries again). */
  private readonly replay: Effect.Effect<void, CacheUnavailable> = Effect.suspend(() => {
    const head = this.queue.head(replayBatchSize)
    if (head === undefined) return Effect.void
    const { inner } = this.env
    const step = isPattern(head)
      ? this.guarded(
        "deletePattern",
        inner.deletePattern(head.pattern),
        Duration.times(this.config.patternTimeout, Math.min(2 ** head.attempts, maxPatternTimeoutFactor)),
        undefined
      ).pipe(
        Effect.tapError(() => Effect.sync(() => head.attempts++)),
        Effect.zipRight(this.queue.applied([head]))
      )
      : this.guarded("delete", inner.delete(head.map((entry) => entry.key)), this.config.timeout, undefined).pipe(
        Effect.zipRight(this.queue.applied(head))
      )
    return Effect.zipRight(step, this.replay)
  })

  /**
   * Replays the whole queue, one replay at a time: callers that arrive during a replay wait for
   * the same one. It runs in the store's scope, so an interrupted caller does not cut it short.
   */
  readonly drain: Effect.Effect<void, CacheUnavailable> = Effect.suspend(() => {
    if (this.draining !== undefined) return Deferred.await(this.draining.done)
    if (this.queue.size === 0) return Effect.void
    const run = { done: Deferred.unsafeMake<void, CacheUnavailable>(FiberId.none), slow: false }
    this.draining = run
    const replayed = this.replay.pipe(
      Effect.tapError((error) =>
        this.env.isCircuitOpen(error.cause)
          ? Effect.void
          : Effect.zipRight(
            Effect.sync(() => this.env.recorder.increment("replayFailures")),
            this.log(Effect.logDebug("cache-aside: invalidation replay failed; will retry", error.message))
          )
      ),
      Effect.onExit((exit) => {
        this.draining = undefined
        return Deferred.done(run.done, exit)
      })
    )
    return Effect.zipRight(Effect.forkIn(replayed, this.env.scope), Deferred.await(run.done))
  })

  /** The background rounds: a replay every `replayInterval` (a failed one is not retried within it). */
  replayRounds(): Effect.Effect<never> {
    return Effect.forever(Effect.zipRight(Effect.sleep(this.config.replayInterval), Effect.exit(this.drain)))
  }

  /** The store's operations. */
  store(): CacheStore["Type"] {
    const { config, env, queue } = this
    const { inner, recorder } = env
    const { readRetry, storeEnforcesTimeout, timeout } = config
    const enqueue = (entries: ReadonlyArray<Invalidation>) => (error: CacheUnavailable) =>
      Effect.as(queue.enqueue(entries, error), 0)
    const keyEntry = (key: string): Invalidation => ({ _tag: "Key", id: `k:${key}`, key })
    const droppedWrite = () => Effect.sync(() => recorder.increment("droppedWrites"))
    const read = <A>(operation: Operation, keys: ReadonlyArray<string>, effect: Effect.Effect<A, CacheUnavailable>) =>
      this.afterInvalidations(operation, keys, this.guarded(operation, effect, timeout, readRetry))
    const slowWrite = <A>(operation: Operation, key: string, effect: Effect.Effect<A, CacheUnavailable>) =>
      this.afterInvalidations(operation, [key], this.guarded(operation, effect, timeout, config.writeRetry))
    // the fill path: nothing queued, breaker closed, no timer of ours: the first attempt goes
    // straight through the closed breaker (a retry still goes through `breaker.call`)
    const { writeRetry } = config
    // one frame for the breaker's outcome and the retry after a failure (the breaker sees it first)
    const fastWrite = <A>(operation: Operation, effect: Effect.Effect<A, CacheUnavailable>) =>
      writeRetry === undefined
        ? Effect.tapError(this.breaker.throughClosed(effect), droppedWrite)
        : this.breaker.throughClosedOr(effect, this.retryAfter(operation, effect, writeRetry, droppedWrite))
    const write = <A>(operation: Operation, key: string, effect: Effect.Effect<A, CacheUnavailable>) =>
      storeEnforcesTimeout
        ? Effect.suspend(() =>
          queue.size === 0 && this.breaker.isClosed
            ? fastWrite(operation, effect)
            : Effect.tapError(slowWrite(operation, key, effect), droppedWrite)
        )
        : Effect.tapError(slowWrite(operation, key, effect), droppedWrite)
    // the hit path: nothing queued, breaker closed, no retry, no timer of ours: one step
    const fastGet = storeEnforcesTimeout && readRetry === undefined
    const readOne = <A>(operation: Operation, key: string, effect: Effect.Effect<A, CacheUnavailable>) =>
      fastGet
        ? Effect.suspend(() =>
          queue.size === 0 && this.breaker.isClosed
            ? this.breaker.throughClosed(effect)
            : read(operation, [key], effect)
        )
        : read(operation, [key], effect)
    return CacheStore.of({
      get: (key) => readOne("get", key, inner.get(key)),
      // a read that may write a lease: it waits for queued invalidations as a read does; a lease the
      // store refused fails with operation `setIfAbsent` (the read path serves the load uncached)
      getOrLease: (key, lease, ttl) => readOne("getOrLease", key, inner.getOrLease(key, lease, ttl)),
      getMany: (keys) => keys.length === 0 ? Effect.succeed([]) : read("getMany", keys, inner.getMany(keys)),
      set: (key, value, ttl) => write("set", key, inner.set(key, value, ttl)),
      // a refused lease means the fill is not written: a dropped write
      setIfAbsent: (key, value, ttl) =>
        read("setIfAbsent", [key], inner.setIfAbsent(key, value, ttl)).pipe(Effect.tapError(droppedWrite)),
      compareAndSet: (key, expected, value, ttl) =>
        write("compareAndSet", key, inner.compareAndSet(key, expected, value, ttl)),
      // releases a lease: a conditional delete that cannot bring old data back, so it neither waits
      // for queued invalidations nor is queued when it fails (the lease expires on its own)
      compareAndDelete: (key, expected) =>
        this.guarded("compareAndDelete", inner.compareAndDelete(key, expected), timeout, readRetry),
      delete: (keys) =>
        keys.length === 0
          ? Effect.succeed(0)
          : this.guarded("delete", inner.delete(keys), timeout, config.invalidationRetry).pipe(
            Effect.catchAll(enqueue(keys.map(keyEntry)))
          ),
      // a pattern every store refuses (too long: `patternRefusal`) is the caller's error, neither
      // retried nor queued for a replay that would fail forever
      deletePattern: (pattern) => {
        const refused = patternRefusal(pattern)
        if (refused !== undefined) return Effect.fail(refused)
        return this.guarded(
          "deletePattern",
          inner.deletePattern(pattern),
          config.patternTimeout,
          config.invalidationRetry
        )
          .pipe(Effect.catchAll(enqueue([queue.makePattern(pattern)])))
      }
    })
  }
}
