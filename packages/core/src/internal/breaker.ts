/**
 * The circuit breaker of `ResilientCacheStore`: a state machine (closed, open, half-open) fed with
 * the outcome of every store call it lets through.
 *
 * - closed: calls go through; `failureThreshold` consecutive failures open it (an error reply such
 *   as `OOM` is not a failure: the store answered);
 * - open: calls are refused at once (`CacheUnavailable` caused by `CircuitOpen`) until the cooldown
 *   has passed; the cooldown doubles per failed probe up to `maxCooldown`, and jitter only ever
 *   shortens it, so processes that opened together do not probe together;
 * - half-open: the first call after the cooldown starts ONE probe in the background (a read of a
 *   key nobody writes) and is refused like the others, so no request waits on a store that may
 *   still hang; the probe's success closes the breaker, its failure re-opens it.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import type * as Random from "effect/Random"
import type * as Scope from "effect/Scope"
import { CacheUnavailable } from "../CacheStore.js"
import type { Operation } from "../CacheStore.js"
import type { StoreRecorder } from "../Metrics.js"

/** @internal */
export type State =
  | { readonly _tag: "Closed"; readonly failures: number }
  | { readonly _tag: "Open"; readonly until: number; readonly reopened: number }
  | { readonly _tag: "HalfOpen"; readonly probing: boolean; readonly reopened: number }

/** @internal */
export interface Config {
  /** The cause of every refusal: `ResilientCacheStore.CircuitOpen`. */
  readonly circuitOpen: unknown
  readonly failureThreshold: number
  readonly cooldownMillis: number
  readonly maxCooldownMillis: number
  /** Random fraction (0 to 1) taken off each cooldown. */
  readonly jitter: number
  /** One attempt of the probe, already time-limited. */
  readonly probe: Effect.Effect<unknown, CacheUnavailable>
  readonly recorder: StoreRecorder
  readonly now: () => number
  readonly random: Random.Random
  /** Where the background probe runs: the store's scope. */
  readonly scope: Scope.Scope
  readonly log: (effect: Effect.Effect<void>) => Effect.Effect<void>
}

/**
 * How long the breaker stays open after `reopened` failed probes, for a random `r` in [0, 1):
 * doubling from the cooldown, capped, then shortened (never lengthened) by up to `jitter`.
 *
 * @internal
 */
export const cooldownFor = (config: Pick<Config, "cooldownMillis" | "maxCooldownMillis" | "jitter">) =>
(
  reopened: number,
  r: number
): number => {
  const base = Math.min(config.maxCooldownMillis, config.cooldownMillis * 2 ** Math.min(reopened, 52))
  return Math.max(0, Math.round(base * (1 - config.jitter * r)))
}

/**
 * Whether a store failure is (or wraps, at any depth) a circuit breaker's refusal: the command was
 * never sent (and the store logged it once).
 *
 * @internal
 */
export const isBreakerOpen = (error: unknown): boolean => {
  let current: unknown = error
  for (let depth = 0; depth < 16 && typeof current === "object" && current !== null; depth++) {
    if (Predicate.isTagged(current, "CircuitOpen")) return true
    current = "cause" in current ? current.cause : undefined
  }
  return false
}

/** @internal */
export class Breaker {
  state: State = { _tag: "Closed", failures: 0 }
  /** One rejection per operation, made once: failing fast must cost next to nothing. */
  private readonly rejections = new Map<Operation, CacheUnavailable>()
  private readonly cooldown: (reopened: number, r: number) => number
  /** The outcome of a call the closed breaker let through. Made once: this is on the hit path. */
  private readonly closedOutcome: {
    readonly onFailure: (cause: Cause.Cause<CacheUnavailable>) => Effect.Effect<never, CacheUnavailable>
    readonly onSuccess: (value: unknown) => Effect.Effect<unknown>
  }

  constructor(readonly config: Config) {
    this.cooldown = cooldownFor(config)
    config.recorder.setBreaker("closed")
    this.closedOutcome = {
      onFailure: (cause) => Effect.zipRight(this.settle(false, Exit.failCause(cause)), Effect.failCause(cause)),
      onSuccess: (value) => {
        this.succeeded()
        return Effect.succeed(value)
      }
    }
  }

  get isClosed(): boolean {
    return this.state._tag === "Closed"
  }

  /** The breaker's own refusal of `operation` (its cause is `CircuitOpen`), counted. */
  reject(operation: Operation): Effect.Effect<never, CacheUnavailable> {
    this.config.recorder.increment("rejected")
    let rejection = this.rejections.get(operation)
    if (rejection === undefined) {
      rejection = new CacheUnavailable({ operation, cause: this.config.circuitOpen })
      this.rejections.set(operation, rejection)
    }
    return Effect.fail(rejection)
  }

  /** Runs a call that the closed breaker lets through, feeding its outcome back. */
  throughClosed<A>(effect: Effect.Effect<A, CacheUnavailable>): Effect.Effect<A, CacheUnavailable> {
    return Effect.matchCauseEffect(effect, this.closedOutcome) as Effect.Effect<A, CacheUnavailable>
  }

  /**
   * As `throughClosed`, then `orElse` on a failure, after the breaker has seen it: one frame for
   * both, where `Effect.catchAll` around `throughClosed` adds one to every call.
   */
  throughClosedOr<A>(
    effect: Effect.Effect<A, CacheUnavailable>,
    orElse: (error: CacheUnavailable) => Effect.Effect<A, CacheUnavailable>
  ): Effect.Effect<A, CacheUnavailable> {
    return Effect.matchCauseEffect(effect, {
      onFailure: (cause) => Effect.catchAll(this.closedOutcome.onFailure(cause), orElse),
      onSuccess: this.closedOutcome.onSuccess as (value: A) => Effect.Effect<A>
    })
  }

  /** One call under the breaker: through when closed; otherwise refused, starting the probe when due. */
  call<A>(operation: Operation, effect: Effect.Effect<A, CacheUnavailable>): Effect.Effect<A, CacheUnavailable> {
    return Effect.suspend(() =>
      this.state._tag === "Closed" ? this.throughClosed(effect) : this.rejectOrProbe(operation)
    )
  }

  /** While the breaker is not closed: refuses the call, starting the probe once the cooldown has passed. */
  rejectOrProbe(operation: Operation): Effect.Effect<never, CacheUnavailable> {
    return Effect.suspend(() => {
      switch (this.state._tag) {
        case "Closed": // closed meanwhile by a probe: this call was already refused
          return this.reject(operation)
        case "Open":
          return this.config.now() < this.state.until ? this.reject(operation) : this.startProbe(operation)
        case "HalfOpen":
          // a probe is running; or it was interrupted (the store's scope closing): start another
          return this.state.probing ? this.reject(operation) : this.startProbe(operation)
      }
    })
  }

  private succeeded(): void {
    if (this.state._tag === "Closed" && this.state.failures > 0) this.state = { _tag: "Closed", failures: 0 }
  }

  private startProbe(operation: Operation): Effect.Effect<never, CacheUnavailable> {
    const reopened = this.state._tag === "Closed" ? 0 : this.state.reopened
    this.state = { _tag: "HalfOpen", probing: true, reopened }
    this.config.recorder.setBreaker("half-open")
    const probe = Effect.onExit(this.config.probe, (exit) => this.settle(true, exit))
    return this.config.log(Effect.logInfo("cache-aside: circuit breaker half-open, probing the store")).pipe(
      Effect.zipRight(Effect.forkIn(probe, this.config.scope)),
      Effect.zipRight(this.reject(operation))
    )
  }

  private open(reopened: number, r: number, reason: string): Effect.Effect<void> {
    const wait = this.cooldown(reopened, r)
    this.state = { _tag: "Open", until: this.config.now() + wait, reopened }
    this.config.recorder.setBreaker("open")
    this.config.recorder.increment("breakerOpened")
    return this.config.log(
      Effect.logWarning(`cache-aside: circuit breaker opened (${reason}); store calls fail fast for ${wait} ms`)
    )
  }

  private close(): Effect.Effect<void> {
    this.state = { _tag: "Closed", failures: 0 }
    this.config.recorder.setBreaker("closed")
    this.config.recorder.increment("breakerClosed")
    return this.config.log(Effect.logInfo("cache-aside: circuit breaker closed, store calls resume"))
  }

  /** Feeds an attempt's outcome (a call's, or the probe's) to the state machine. */
  settle(probe: boolean, exit: Exit.Exit<unknown, CacheUnavailable>): Effect.Effect<void> {
    if (Exit.isSuccess(exit)) {
      if (probe) return this.close()
      this.succeeded()
      return Effect.void
    }
    const failure = Cause.failureOption(exit.cause)
    if (Option.isNone(failure)) {
      // interrupted or a defect: not an answer about the store's health, but free the probe slot
      if (probe && this.state._tag === "HalfOpen") this.state = { ...this.state, probing: false }
      return Effect.void
    }
    const recorder = this.config.recorder
    recorder.increment("failures")
    // ours or the inner store's own (the Redis client's commandTimeout)
    if (Cause.isTimeoutException(failure.value.cause)) recorder.increment("timeouts")
    // an error reply (out of memory, read-only replica, ...): the store is up and answers at once,
    // so it costs no latency and is no reason to skip the store for the operations that still work
    if (failure.value.replied === true) return this.settle(probe, Exit.void)
    return Effect.flatMap(this.config.random.next, (r) =>
      Effect.suspend(() => {
        if (probe && this.state._tag === "HalfOpen") return this.open(this.state.reopened + 1, r, "the probe failed")
        if (this.state._tag !== "Closed") return Effect.void
        const failures = this.state.failures + 1
        if (failures < this.config.failureThreshold) {
          this.state = { _tag: "Closed", failures }
          return Effect.void
        }
        return this.open(0, r, `${failures} consecutive failures`)
      }))
  }
}
