/**
 * Single flight per key: one read (and, on a miss, one load) in flight per key per process; gets of
 * the same key join it.
 *
 * A get leads a flight: it registers the flight and the finalizer that settles it in one
 * uninterruptible step, and reads the store inline (a hit costs no fork). When the read needs a
 * load, the load runs as a fiber of the cache's `FiberSet` ("background"), and the leader waits for
 * it as its joiners do: each waiter is counted in and out with `acquireUseRelease`, so an
 * interrupted caller only removes itself, and the load is interrupted when its last waiter has
 * gone. A flight interrupted during its inline read settles with `Retry`: its joiners try again.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as FiberRef from "effect/FiberRef"
import * as FiberSet from "effect/FiberSet"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"

/** @internal */
export const Retry: unique symbol = Symbol.for("@cache-aside/core/CacheAside/Retry")

/** What a flight answers its waiters: the get's exit, or `Retry` (its leader was interrupted). @internal */
export type Outcome<A, E> = Exit.Exit<Option.Option<A>, E> | typeof Retry

/** A load that serves one or more flights (a get's, or a `getMany`'s batch). @internal */
export interface Task {
  fiber: Fiber.RuntimeFiber<unknown, unknown> | undefined
  readonly flights: ReadonlyArray<AnyFlight>
}

/** @internal */
export class Flight<A, E> {
  outcome: Outcome<A, E> | undefined = undefined
  /** Callbacks of the callers waiting for the outcome (plain callbacks: cheaper than a `Deferred` for hot keys). */
  callbacks: Array<(outcome: Outcome<A, E>) => void> | undefined = undefined
  /** The load serving this flight, once its leader's read asked for one. */
  task: Task | undefined = undefined
  /** Callers waiting for the outcome (the leader, once its load runs, and the joiners). */
  waiters = 0
  /** Set when the key was invalidated or overwritten while the flight ran: its result is not cached. */
  invalidated = false
  /** Still in the map (a soft timeout answers a flight whose load goes on: it stays until the load ends). */
  registered = true
  constructor(readonly full: string, readonly userKey: string) {}
}

/** An uninterruptible region's `restore`: runs an effect with the interruptibility outside it. @internal */
export type Restore = <X, Y, Z>(effect: Effect.Effect<X, Y, Z>) => Effect.Effect<X, Y, Z>

const identity: Restore = (effect) => effect

/**
 * What a load's fiber does when it ends, however it ends: the effect left to run (releasing a lease
 * its fill did not consume), or `undefined` when nothing is left. Decided when the load ends. @internal
 */
export type Cleanup = () => Effect.Effect<void> | undefined

/**
 * What a load fiber loads, then what the load whose lookup started it loads (a lookup's own get of
 * another key): a chain, to tell a get that would wait for itself.
 */
interface Loading {
  readonly flights: ReadonlyArray<AnyFlight>
  readonly next: Loading | undefined
}

/**
 * What the fiber running now loads, with the chain of loads whose lookups started it: set on each
 * load fiber (and inherited by the fibers its lookup forks: a hard timeout's, a batch's), cleared on
 * background work nobody waits for (a refresh).
 */
const loading = FiberRef.unsafeMake<Loading | undefined>(undefined)

/**
 * A get made by a lookup (directly, or through the lookups of other keys it gets) of a key whose
 * load is that very lookup: it would wait for itself forever. A defect of the lookup: it dies with
 * this, its load fails, and every get waiting on it gets the defect instead of hanging. @internal
 */
export class ReentrantGet extends Error {
  override readonly name = "ReentrantGet"
}

/** A flight of any value and error type, for bookkeeping that looks at neither. @internal */
export type AnyFlight = Flight<unknown, unknown>

const anyFlight = <A, E>(flight: Flight<A, E>): AnyFlight => flight as unknown as AnyFlight

const retryOf = <A, E>(exit: Exit.Exit<Option.Option<A>, E>): Outcome<A, E> =>
  Exit.isFailure(exit) && Cause.isInterrupted(exit.cause) ? Retry : exit

/**
 * The flights of one cache.
 *
 * @internal
 */
export class Flights {
  private readonly map = new Map<string, AnyFlight>()
  constructor(
    private readonly set: FiberSet.FiberSet<unknown, unknown>,
    /** The context a load forked by a caller with this context runs with (the lookup's services). */
    private readonly contextFor: (caller: Context.Context<never>) => Context.Context<never> = (caller) => caller
  ) {}

  get<A, E>(full: string): Flight<A, E> | undefined {
    return this.map.get(full) as Flight<A, E> | undefined
  }

  get size(): number {
    return this.map.size
  }

  /** Every flight in the map (for invalidations). */
  all(): IterableIterator<AnyFlight> {
    return this.map.values()
  }

  /** Registers a flight (synchronously: call it in an uninterruptible region). */
  register<A, E>(full: string, userKey: string): Flight<A, E> {
    const flight = new Flight<A, E>(full, userKey)
    this.map.set(full, anyFlight(flight))
    return flight
  }

  /** Answers the flight's waiters (once); the flight may stay registered while its load goes on. */
  answer<A, E>(flight: Flight<A, E>, outcome: Outcome<A, E>): void {
    if (flight.outcome !== undefined) return
    flight.outcome = outcome
    const callbacks = flight.callbacks
    flight.callbacks = undefined
    if (callbacks === undefined) return
    for (const callback of callbacks) {
      try {
        callback(outcome)
      } catch {
        // a waiter's callback does not throw (a fiber's resume, a promise's settle that catches its
        // own); should one, the waiters after it are still answered, and this fiber's observers
        // (its removal from the cache's FiberSet) still run
      }
    }
  }

  /** Set when the cache's scope closes: a load can no longer start, so a `Retry` would only repeat. */
  closed = false

  close(): void {
    this.closed = true
  }

  /** Ends a flight: unregistered and answered (if not yet). */
  end<A, E>(flight: Flight<A, E>, outcome: Outcome<A, E>): void {
    this.unregister(flight)
    this.answer(flight, outcome)
  }

  /** Removes the flight from the map: the next get of its key starts a new one. */
  unregister<A, E>(flight: Flight<A, E>): void {
    if (flight.registered) {
      flight.registered = false
      if (this.map.get(flight.full) === anyFlight(flight)) this.map.delete(flight.full)
    }
  }

  /**
   * Leads a new flight for `full`: `work` reads (and decides) inline; when it settles without a
   * background load, its exit is the flight's outcome. `work` runs in this mask: it restores
   * (with `restore`) exactly what may wait, and its bookkeeping between those parts is one step.
   */
  lead<A, E>(
    full: string,
    userKey: string,
    work: (flight: Flight<A, E>, restore: Restore) => Effect.Effect<Option.Option<A>, E>
  ): Effect.Effect<Option.Option<A>, E> {
    return Effect.uninterruptibleMask((restore) => {
      const flight = this.register<A, E>(full, userKey)
      // already uninterruptible: a plain match is the finalizer (no second mask, as `onExit` has)
      return Effect.matchCauseEffect(work(flight, restore), {
        onFailure: (cause) => {
          if (flight.task === undefined) this.end(flight, retryOf(Exit.failCause(cause)))
          return Effect.failCause(cause)
        },
        onSuccess: (value) => {
          if (flight.task === undefined) this.end(flight, Exit.succeed(value))
          return Effect.succeed(value)
        }
      })
    })
  }

  /**
   * Calls `callback` with the flight's outcome, now if it is answered: a waiter outside any fiber
   * (a `PromiseCache` get), counted in for good, as an uninterruptible caller is (its load is never
   * interrupted for want of waiters while it waits).
   */
  whenAnswered<A, E>(flight: Flight<A, E>, callback: (outcome: Outcome<A, E>) => void): void {
    if (flight.outcome !== undefined) return callback(flight.outcome)
    flight.waiters++
    ;(flight.callbacks ??= []).push(callback)
  }

  /**
   * Waits for the outcome of flights, each counted as waited for until this caller leaves (answered
   * or interrupted). When a flight's last waiter leaves before it is answered, it is unregistered,
   * and its load is interrupted once no flight of that load is left unanswered.
   */
  await<A, E>(
    flights: ReadonlyArray<Flight<A, E>>,
    restore: <X, Y>(effect: Effect.Effect<X, Y>) => Effect.Effect<X, Y> = (effect) => effect
  ): Effect.Effect<Array<Outcome<A, E>>> {
    return Effect.acquireUseRelease(
      Effect.sync(() => {
        for (const flight of flights) flight.waiters++
      }),
      () => restore(Effect.forEach(flights, (flight) => this.outcomeOf(flight))),
      () => Effect.sync(() => this.leave(flights))
    )
  }

  /**
   * The outcome, once answered. No canceller: the caller's count is kept by `await` or `join`, and
   * the answer to a caller that was interrupted meanwhile is ignored.
   */
  private outcomeOf<A, E>(flight: Flight<A, E>): Effect.Effect<Outcome<A, E>> {
    if (flight.outcome !== undefined) return Effect.succeed(flight.outcome)
    return Effect.async<Outcome<A, E>>((resume) => {
      if (flight.outcome !== undefined) return resume(Effect.succeed(flight.outcome))
      ;(flight.callbacks ??= []).push((outcome) => resume(Effect.succeed(outcome)))
    })
  }

  /**
   * Waits for one flight (a joiner), then `then` with its outcome: counted in with the wait,
   * counted out only by an interrupt (once answered, the count no longer matters). One mask and one
   * match for the whole join: cheaper than `await` for the many joiners of a hot key. `then` runs
   * in the mask: it restores (with `restore`) whatever may wait.
   */
  join<A, E, X, Y>(
    flight: Flight<A, E>,
    then: (outcome: Outcome<A, E>, restore: Restore) => Effect.Effect<X, Y>
  ): Effect.Effect<X, Y> {
    if (flight.outcome !== undefined) return then(flight.outcome, identity)
    return Effect.uninterruptibleMask((restore) => this.waitIn(flight, restore, (outcome) => then(outcome, restore)))
  }

  /**
   * Counts this caller in as a waiter of `flight` and waits for its outcome, then `then`. Called
   * inside a mask (`restore` is its): counted in within the caller's step, counted out only by an
   * interrupt (as `onInterrupt`, without its own mask).
   */
  private waitIn<A, E, X, Y>(
    flight: Flight<A, E>,
    restore: Restore,
    then: (outcome: Outcome<A, E>) => Effect.Effect<X, Y>
  ): Effect.Effect<X, Y> {
    flight.waiters++
    return Effect.matchCauseEffect(restore(this.outcomeOf(flight)), {
      onFailure: (cause) => {
        if (Cause.isInterruptedOnly(cause)) this.leave([flight])
        return Effect.failCause(cause)
      },
      onSuccess: then
    })
  }

  private leave<A, E>(flights: ReadonlyArray<Flight<A, E>>): void {
    for (const flight of flights) {
      flight.waiters--
      if (flight.waiters > 0 || flight.outcome !== undefined) continue
      const task = flight.task
      if (task === undefined) continue // still in its leader's inline read: the leader settles it
      this.end(flight, Retry)
      if (task.fiber !== undefined && task.flights.every((f) => f.outcome !== undefined)) {
        task.fiber.unsafeInterruptAsFork(FiberId.none)
      }
    }
  }

  /**
   * Runs `work` as the load of `flights` in the cache's `FiberSet` (so closing the cache's scope
   * interrupts it), inheriting the caller's context (its span). Its exit ends every flight it has
   * not answered. Call it in an uninterruptible region: the fork and its bookkeeping are one step.
   */
  spawn<A, E>(flights: ReadonlyArray<Flight<A, E>>, work: Effect.Effect<unknown, unknown>): Effect.Effect<void> {
    return this.spawnThen(flights, work, undefined, () => Effect.void)
  }

  /** `spawn`, then `then` in the same step (the leader counting itself in as a waiter). */
  private spawnThen<A, E, X, Y>(
    flights: ReadonlyArray<Flight<A, E>>,
    work: Effect.Effect<unknown, unknown>,
    cleanup: Cleanup | undefined,
    then: () => Effect.Effect<X, Y>
  ): Effect.Effect<X, Y> {
    const task: Task = { fiber: undefined, flights: flights.map(anyFlight) }
    for (const flight of flights) flight.task = task
    // the fiber starts uninterruptible (forked from this masked region): the match that runs
    // `cleanup` on every exit is in place before anything can interrupt it (`ensuring` without
    // its own mask); a cleanup with nothing left to do costs no step
    const body = cleanup === undefined
      ? Effect.interruptible(work)
      : Effect.matchCauseEffect(Effect.interruptible(work), {
        onFailure: (cause) => {
          const left = cleanup()
          return left === undefined ? Effect.failCause(cause) : Effect.zipRight(left, Effect.failCause(cause))
        },
        onSuccess: (value) => {
          const left = cleanup()
          return left === undefined ? Effect.succeed(value) : Effect.as(left, value)
        }
      })
    return Effect.flatMap(this.forkLoad(body, task.flights), (fiber) => {
      task.fiber = fiber
      FiberSet.unsafeAdd(this.set, fiber)
      fiber.addObserver((exit) => {
        const outcome = retryOf(exit as Exit.Exit<Option.Option<unknown>, unknown>)
        for (const flight of task.flights) this.end(flight, outcome)
      })
      return then()
    })
  }

  /**
   * Forks a load (or a background refresh) as a daemon (the cache's `FiberSet` owns it) with the
   * caller's fiber refs and runtime flags, and the context `contextFor` gives: when that is the
   * caller's own, a plain `forkDaemon`; else the fork sets it in the same step (`Runtime.runFork`
   * over the caller's refs), so the lookups of the load need no `Effect.provide`. Started on the
   * scheduler, as `forkDaemon` starts a fiber, never inside this step.
   */
  forkLoad(
    work: Effect.Effect<unknown, unknown>,
    /** What the load loads (its waiters wait for these); `undefined`: background work nobody waits for. */
    flights: ReadonlyArray<AnyFlight> | undefined
  ): Effect.Effect<Fiber.RuntimeFiber<unknown, unknown>> {
    return Effect.withFiberRuntime((parent, status) => {
      // the fiber is new: setting the ref first is enough (nothing to restore after it ends)
      const inherited = parent.getFiberRef(loading)
      const chain = flights === undefined ? undefined : { flights, next: inherited }
      const body = chain === inherited ? work : Effect.zipRight(FiberRef.set(loading, chain), work)
      const caller = parent.getFiberRef(FiberRef.currentContext)
      const context = this.contextFor(caller)
      if (context === caller) return Effect.forkDaemon(body)
      const runtime = Runtime.make({
        context,
        fiberRefs: parent.getFiberRefs(),
        runtimeFlags: status.runtimeFlags
      })
      return Effect.succeed(Runtime.runFork(runtime)(body, { immediate: false }))
    })
  }

  /**
   * Whether the fiber running now would wait for itself by waiting for `flight`: it is the load of
   * that flight, or a load started by that load's lookup (through any number of lookups), or a
   * fiber such a lookup runs (they inherit the chain). A cycle through a load another caller
   * started is not seen (a hard `lookupTimeout` ends it).
   */
  waitsForItself<A, E>(flight: Flight<A, E>): boolean {
    if (flight.outcome !== undefined) return false // answered (a soft timeout): a get of it does not wait
    const current = Fiber.getCurrentFiber()
    if (Option.isNone(current)) return false
    for (let node = current.value.getFiberRef(loading); node !== undefined; node = node.next) {
      if (node.flights.includes(anyFlight(flight))) return true
    }
    return false
  }

  /** Ends a flight with the exit of its work (an interrupt: `Retry`). */
  settle<A, E>(flight: Flight<A, E>, exit: Exit.Exit<Option.Option<A>, E>): void {
    this.end(flight, retryOf(exit))
  }

  /**
   * Moves a led flight's remaining work (a load) into the background, and waits for it as one of
   * its waiters: the fork and the count of this waiter are one uninterruptible step. Called by the
   * leader inside `lead`'s mask (`restore` is its), with `cleanup` run when the load ends however
   * it ends (a lease taken by the leader's read is released there): from the read to the fork
   * nothing can interrupt the leader.
   */
  background<A, E>(
    flight: Flight<A, E>,
    work: Effect.Effect<Option.Option<A>, E>,
    cleanup: Cleanup | undefined,
    restore: Restore
  ): Effect.Effect<Option.Option<A>, E> {
    // the fiber's observer (see `spawnThen`) settles the flight with the load's exit; this waiter is
    // counted in within the same step as the fork. Retry: the load was interrupted while this
    // caller waited, which only the closing of the cache's scope does
    return this.spawnThen(
      [flight],
      work,
      cleanup,
      () => this.waitIn(flight, restore, (outcome) => outcome === Retry ? Effect.interrupt : outcome)
    )
  }
}
