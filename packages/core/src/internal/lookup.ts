/**
 * Running the user's lookup: with the services `make` captured (never the span `make` ran in: a
 * lookup's span parent is its caller's), its hard timeout, a `cache_aside.load` span when the caller
 * is traced, and its metrics. `load` and `loadMany` get exactly the same treatment.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Tracer from "effect/Tracer"
import type { Recorder } from "../Metrics.js"
import { Gate } from "./gate.js"
import type { Config } from "./options.js"

/**
 * Applies `span` only when the caller is traced (a parent span is in context). A span costs more
 * CPU than a cache hit and a quick lookup together; an untraced application should not pay it.
 *
 * @internal
 */
export const whenTraced = <A, E>(
  effect: Effect.Effect<A, E>,
  span: (effect: Effect.Effect<A, E>) => Effect.Effect<A, E>
): Effect.Effect<A, E> =>
  Effect.flatMap(Effect.serviceOption(Tracer.ParentSpan), (parent) => Option.isSome(parent) ? span(effect) : effect)

/** @internal */
export class Lookup<K, A, E, R, T> {
  /** The captured services, without the span `make` ran in. */
  private readonly context: Context.Context<R>
  /** `lookupConcurrency`: a flush or an outage cannot send unbounded load to the data store. */
  private readonly gate: Gate
  private lastCaller: Context.Context<never> | undefined = undefined
  private callerHasAll = false
  /** The last caller context `contextFor` merged, and the merge. */
  private mergedCaller: Context.Context<never> | undefined = undefined
  private merged: Context.Context<never> | undefined = undefined
  constructor(
    private readonly config: Config<K, A, E, R>,
    private readonly recorder: Recorder,
    captured: Context.Context<R>,
    private readonly now: () => number,
    private readonly timeoutError: (key: string) => T
  ) {
    this.context = Context.omit(Tracer.ParentSpan)(captured) as Context.Context<R>
    this.gate = new Gate(config.lookupConcurrency)
  }

  /**
   * `effect` with the captured services, given the caller's context. When the caller's context
   * already holds every one of them (gets made where the cache was made, the common case), nothing
   * needs providing: providing costs more CPU than a cache hit. Checked once per caller context.
   */
  private provided<X, Y>(effect: Effect.Effect<X, Y, R>, caller: Context.Context<never>): Effect.Effect<X, Y> {
    return this.hasAll(caller) ? effect as Effect.Effect<X, Y> : Effect.provide(effect, this.context)
  }

  /**
   * Whether `caller` holds every captured service, the very same ones: `contextFor`'s merge does by
   * construction; any other context is checked once (the last one checked is remembered).
   */
  private hasAll(caller: Context.Context<never>): boolean {
    if (caller === this.merged) return true
    if (caller !== this.lastCaller) {
      this.lastCaller = caller
      this.callerHasAll = true
      for (const [service, value] of this.context.unsafeMap) {
        if (caller.unsafeMap.get(service) !== value) {
          this.callerHasAll = false
          break
        }
      }
    }
    return this.callerHasAll
  }

  /**
   * The context a load fiber forked by `caller` runs with: `caller` itself when it holds every
   * captured service, else `caller` with the captured services over it (what `provided` would give
   * the lookup), made once per caller context. A fiber forked with it runs its lookups without
   * `Effect.provide` (about 5 µs each): a cache made in a layer captures the layer's `Scope` and
   * memo map, which no caller holds.
   */
  contextFor(caller: Context.Context<never>): Context.Context<never> {
    if (this.hasAll(caller)) return caller
    if (caller !== this.mergedCaller) {
      this.mergedCaller = caller
      this.merged = Context.merge(caller, this.context as Context.Context<never>)
    }
    return this.merged!
  }

  /**
   * Hard timeout, span, metrics around one lookup (of one key or a batch); answers the value and
   * its duration. One read of the caller's context decides the services to provide and the span.
   */
  private run<X>(
    thunk: () => Effect.Effect<X, E, R>,
    count: number,
    label: () => string,
    attributes: () => Record<string, unknown>,
    /** What is wrong with the answer (a JavaScript caller's lookup can answer anything), if anything. */
    check: (answer: X) => TypeError | undefined
  ): Effect.Effect<readonly [X, number], E | T> {
    return Effect.contextWithEffect((caller: Context.Context<never>) => {
      const start = this.now()
      this.recorder.increment("loads", count)
      // the user's function is called here, inside the load's effect: one that throws instead of
      // returning an effect is a defect of this load (counted, its lease released as on any failure)
      let effect: Effect.Effect<X, E, R>
      try {
        effect = thunk()
      } catch (thrown) {
        effect = Effect.die(thrown)
      }
      let lookup: Effect.Effect<X, E | T> = this.gate.run(this.provided(effect, caller))
      const hard = this.config.hardTimeout
      if (hard !== undefined) {
        lookup = Effect.timeoutFail(lookup, {
          duration: hard,
          onTimeout: () => {
            this.recorder.increment("lookupTimeouts")
            return this.timeoutError(label())
          }
        })
      }
      // a span only when the caller is traced (see `whenTraced`)
      if (Option.isSome(Context.getOption(caller, Tracer.ParentSpan))) {
        lookup = Effect.withSpan(lookup, "cache_aside.load", {
          kind: "client",
          attributes: attributes(),
          captureStackTrace: false
        })
      }
      return Effect.matchCauseEffect(lookup, {
        // a failure or a defect (a lookup that threw) is a failed lookup; an interrupt is not
        onFailure: (cause) => {
          if (!Cause.isInterruptedOnly(cause)) this.recorder.increment("loadErrors", count)
          return Effect.failCause(cause)
        },
        onSuccess: (value) => {
          const wrong = check(value)
          if (wrong !== undefined) {
            this.recorder.increment("loadErrors", count)
            return Effect.die(wrong)
          }
          const delta = this.now() - start
          this.recorder.observeLoad(delta)
          return Effect.succeed([value, delta] as const)
        }
      })
    })
  }

  /** Loads one key. */
  load(key: K, userKey: string): Effect.Effect<readonly [Option.Option<A>, number], E | T> {
    // keys can be secrets: a short hash unless logKeys, computed only when a span or an error needs it
    const label = () => this.config.keyLabel(userKey)
    return this.run(
      () => this.config.load(key),
      1,
      label,
      () => ({ namespace: this.config.namespace, key: label() }),
      (answer) => Option.isOption(answer) ? undefined : this.notAnOption("lookup", answer)
    )
  }

  /**
   * Loads a batch with `loadMany`: the answers by user key (matched by `key(k)`, never by
   * position). A key left out is not in the map.
   */
  loadMany(keys: ReadonlyArray<K>): Effect.Effect<readonly [Map<string, Option.Option<A>>, number], E | T> {
    const loadMany = this.config.loadMany!
    const answers = () =>
      Effect.map(loadMany(keys), (pairs) => {
        const byKey = new Map<string, Option.Option<A>>()
        for (const [k, value] of pairs) {
          // thrown inside `map`: a defect of this batch, as a lookup's wrong answer is of its load
          if (!Option.isOption(value)) throw this.notAnOption("loadMany", value)
          byKey.set(this.config.key(k), value)
        }
        return byKey
      })
    return this.run(answers, keys.length, () => `${keys.length} keys`, () => ({
      namespace: this.config.namespace,
      keys: keys.length
    }), () => undefined)
  }

  /**
   * The defect of a lookup that answers something else than an `Option` (a JavaScript caller's
   * row, `null`): cached as "not found" it would hide a row that exists, so the load fails instead.
   */
  private notAnOption(what: "lookup" | "loadMany", answer: unknown): TypeError {
    const got = answer === null
      ? "null"
      : Array.isArray(answer)
      ? "an array"
      : typeof answer === "object"
      ? "an object that is not an Option"
      : typeof answer
    return new TypeError(
      `cache-aside: the ${what} of namespace "${this.config.namespace}" must answer Option.some(value) or Option.none() for a key, got ${got}`
    )
  }
}
