/**
 * The model-based property of a cache: random sequences of gets, `getMany`s, writes (through the
 * application's own write path), operations forked to run concurrently, interrupts, clock ticks,
 * store faults and lookup faults, run against the application's cache definition over a test
 * database, and checked against that database: every read must answer a value the key held while
 * the read ran (or while a write of it was still in flight). A failure is reported as a shrunk
 * counterexample. For a write path that forgets to invalidate:
 *
 * ```text
 * the final [0] get(1) after every operation ended answered None for 1, but the database held Some("a") while it ran (stale)
 * after (seed 42, 5 shrinks):
 *   1. [0] get(1)
 *   2. fork [0] write(1, "a")
 * ```
 *
 * The system runs as two instances (processes) over one store and database by default, so a load in
 * one process racing an invalidation by another, which only the lease stops, is reached too.
 *
 * It is deterministic: a fixed fast-check seed, a fresh virtual clock per run (it replaces Effect's
 * `Clock`, like `TestClock` but without waiting on real timers; time only moves when a
 * command ticks it or when an operation waits for it), a seeded `Random`, and interleavings made by
 * explicit yields; a bug it finds is found on every run.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import * as Layer from "effect/Layer"
import * as Random from "effect/Random"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import type * as CacheAside from "../CacheAside.js"
import type { CacheStore } from "../CacheStore.js"
import type { FaultInjection } from "../FaultInjection.js"
import type { Metrics } from "../Metrics.js"
import * as Database from "./Database.js"
import * as Faults from "./Faults.js"
import { Runner } from "./internal/runner.js"
import { VirtualClock } from "./internal/virtualClock.js"
import * as TestStore from "./TestStore.js"

/**
 * What each run provides to `make`: the test store (with fault injection and metrics) and the run's scope.
 *
 * @since 0.1.0
 */
export type Provided = CacheStore | FaultInjection | Metrics | Scope.Scope

/**
 * The system under test: the application's cache, and its write path (write the database, then
 * invalidate the cache, as the application does).
 *
 * @since 0.1.0
 */
export interface System<K, A, E> {
  readonly cache: CacheAside.CacheAside<K, A, E>
  readonly write: (key: K, value: A) => Effect.Effect<void, unknown>
}

/**
 * One step of a generated sequence.
 *
 * @since 0.1.0
 */
export type Command<K, A> =
  | { readonly _tag: "Get"; readonly instance: number; readonly key: K }
  | { readonly _tag: "GetMany"; readonly instance: number; readonly keys: ReadonlyArray<K> }
  | { readonly _tag: "Write"; readonly instance: number; readonly key: K; readonly value: A }
  | { readonly _tag: "Fork"; readonly command: Operation<K, A> }
  | { readonly _tag: "Interrupt"; readonly instance: number; readonly key: K; readonly afterYields: number }
  | { readonly _tag: "Yield"; readonly times: number }
  | { readonly _tag: "Tick"; readonly duration: Duration.Duration }
  | { readonly _tag: "Store"; readonly fault: Faults.StoreFault }
  | { readonly _tag: "Lookup"; readonly fault: Faults.LookupFault }
  | { readonly _tag: "Settle" }
  | {
    readonly _tag: "Race"
    readonly reader: number
    readonly writer: number
    readonly key: K
    readonly value: A
  }

/**
 * The commands that run an operation of the system (alone, or forked).
 *
 * @since 0.1.0
 */
export type Operation<K, A> = Extract<Command<K, A>, { readonly _tag: "Get" | "GetMany" | "Write" }>

/**
 * @since 0.1.0
 */
export interface Options<K, A, E, R> {
  /**
   * Builds the system over the test database, once per run (the run's scope, `TestClock`, and the
   * test store with fault injection and metrics are provided). Give the cache `database.source`
   * (or `database.sourceFailingWith`) as its lookup, e.g. through your data source's layer.
   */
  readonly make: (
    database: Database.Database<K, A>
  ) => Effect.Effect<System<K, A, E>, unknown, R | Provided>
  /**
   * How many instances of the system run side by side over the one store and database, as the
   * processes of a fleet do (each `make` is one process: its own flights, its own near cache; a
   * `CacheBus` shared by the instances is provided, as Redis pub/sub is shared by processes).
   * Default 2: a load that races an invalidation made by another process is one of the hard cases.
   */
  readonly instances?: number | undefined
  /** The keys to use: keep the domain small (3 or 4 keys) so that operations collide. */
  readonly keys: FastCheck.Arbitrary<K>
  /** The values written. */
  readonly values: FastCheck.Arbitrary<A>
  /**
   * How long every lookup takes (it reads the rows first, then answers after this): the window in
   * which a write can race a load. Default 10 millis. A `Slow` lookup fault takes longer.
   */
  readonly lookupLatency?: Duration.DurationInput | undefined
  /** The database's rows before each run. Default: none. */
  readonly rows?: Iterable<readonly [K, A]> | undefined
  /** fast-check's seed. Default 42. */
  readonly seed?: number | undefined
  /** How many sequences to run. Default 100. */
  readonly runs?: number | undefined
  /** The longest sequence. Default 25. */
  readonly maxCommands?: number | undefined
  /** Generate store faults (down, flapping, slow, healthy). Default `true`. */
  readonly storeFaults?: boolean | undefined
  /** Generate lookup faults (failing, slow, healthy). Default `true`. */
  readonly lookupFaults?: boolean | undefined
  /** Generate interrupted gets. Default `true`. */
  readonly interrupts?: boolean | undefined
  /** The clock ticks to choose from. Default: 10 millis, 1 second, 1 minute, 2 hours. */
  readonly ticks?: ReadonlyArray<Duration.DurationInput> | undefined
  /**
   * The store of each run. Default `{ resilient: true }`: the resilient wrapper over fault
   * injection over a memory store, as `@cache-aside/redis` does by default. Without it, an
   * invalidation during an outage fails and the property reports the stale reads that follow.
   */
  readonly store?: TestStore.Options | undefined
  /**
   * Sequences to run before the random ones (fast-check's `examples`): a counterexample found
   * once, kept as a regression.
   */
  readonly examples?: ReadonlyArray<ReadonlyArray<Command<K, A>>> | undefined
  /** The longest (virtual) time an operation may take before the property reports it hung. Default 10 minutes. */
  readonly maxWait?: Duration.DurationInput | undefined
  /** Formats keys and values in counterexamples. Default: `JSON.stringify`, or `String` for class instances. */
  readonly show?: ((value: unknown) => string) | undefined
}

/**
 * The property found a sequence that breaks the cache; `commands` is the shrunk sequence.
 *
 * @example
 * ```ts
 * import { Property } from "@cache-aside/core/testing"
 * const found = (error: Property.CounterExample) => error.violation.includes("answered")
 * ```
 *
 * @since 0.1.0
 */
export class CounterExample extends Schema.TaggedError<CounterExample>("@cache-aside/core/testing/CounterExample")(
  "CounterExample",
  {
    violation: Schema.String,
    commands: Schema.Array(Schema.String),
    seed: Schema.Number,
    shrinks: Schema.Number
  }
) {
  override get message(): string {
    return `${this.violation}\nafter (seed ${this.seed}, ${this.shrinks} shrinks):\n${
      this.commands.map((command, i) => `  ${i + 1}. ${command}`).join("\n")
    }`
  }
}

/**
 * What a passing check ran.
 *
 * @since 0.1.0
 */
export interface Report {
  readonly runs: number
  readonly seed: number
}

/** The virtual time every run starts at: 2026-01-01T00:00:00Z. */
const startTime = Date.UTC(2026, 0, 1)

const defaultTicks: ReadonlyArray<Duration.DurationInput> = ["10 millis", "1 second", "1 minute", "2 hours"]

/**
 * The arbitrary of command sequences for these options.
 *
 * @example
 * ```ts
 * import { Effect, FastCheck } from "effect"
 * import { Property } from "@cache-aside/core/testing"
 *
 * const sequences = Property.commands({
 *   make: () => Effect.never,
 *   keys: FastCheck.integer({ min: 1, max: 3 }),
 *   values: FastCheck.string()
 * })
 * ```
 *
 * @since 0.1.0
 */
export const commands = <K, A, E, R>(options: Options<K, A, E, R>): FastCheck.Arbitrary<Array<Command<K, A>>> => {
  const { keys, values } = options
  const instance = FastCheck.integer({ min: 0, max: Math.max(1, options.instances ?? 2) - 1 })
  const get = FastCheck.tuple(instance, keys).map(([instance, key]): Operation<K, A> => ({
    _tag: "Get",
    instance,
    key
  }))
  const getMany = FastCheck.tuple(instance, FastCheck.array(keys, { minLength: 1, maxLength: 4 })).map((
    [instance, keys]
  ): Operation<K, A> => ({ _tag: "GetMany", instance, keys }))
  const write = FastCheck.tuple(instance, keys, values).map(([instance, key, value]): Operation<K, A> => ({
    _tag: "Write",
    instance,
    key,
    value
  }))
  const operation = FastCheck.oneof(get, getMany, write)
  const ticks = (options.ticks ?? defaultTicks).map(Duration.decode)
  const weighted: Array<FastCheck.WeightedArbitrary<Command<K, A>>> = [
    { weight: 4, arbitrary: get },
    { weight: 1, arbitrary: getMany },
    { weight: 3, arbitrary: write },
    { weight: 4, arbitrary: operation.map((command): Command<K, A> => ({ _tag: "Fork", command })) },
    {
      weight: 2,
      arbitrary: FastCheck.integer({ min: 1, max: 64 }).map((times): Command<K, A> => ({ _tag: "Yield", times }))
    },
    {
      weight: 2,
      arbitrary: FastCheck.constantFrom(...ticks).map((duration): Command<K, A> => ({ _tag: "Tick", duration }))
    },
    { weight: 1, arbitrary: FastCheck.constant<Command<K, A>>({ _tag: "Settle" }) },
    {
      // the classic race, often enough to be found: a read's load in flight, a write of its key
      // (by the same instance or another), a read right after the write
      weight: 2,
      arbitrary: FastCheck.tuple(instance, instance, keys, values).map((
        [reader, writer, key, value]
      ): Command<K, A> => ({
        _tag: "Race",
        reader,
        writer,
        key,
        value
      }))
    }
  ]
  if (options.interrupts !== false) {
    weighted.push({
      weight: 1,
      arbitrary: FastCheck.tuple(instance, keys, FastCheck.integer({ min: 0, max: 6 })).map((
        [instance, key, afterYields]
      ): Command<K, A> => ({ _tag: "Interrupt", instance, key, afterYields }))
    })
  }
  if (options.storeFaults !== false) {
    weighted.push({
      weight: 1,
      arbitrary: Faults.storeFault().map((fault): Command<K, A> => ({ _tag: "Store", fault }))
    })
  }
  if (options.lookupFaults !== false) {
    weighted.push({
      weight: 2,
      arbitrary: Faults.lookupFault.map((fault): Command<K, A> => ({ _tag: "Lookup", fault }))
    })
  }
  return FastCheck.array(FastCheck.oneof(...weighted), { minLength: 1, maxLength: options.maxCommands ?? 25 })
}

/**
 * A readable line for a command.
 *
 * @example
 * ```ts
 * import { Property } from "@cache-aside/core/testing"
 *
 * Property.describe({ _tag: "Write", instance: 0, key: 1, value: "b" }) // [0] write(1, "b")
 * ```
 *
 * @since 0.1.0
 */
export const describe = <K, A>(command: Command<K, A>, show: (value: unknown) => string = defaultShow): string => {
  const on = "instance" in command ? `[${command.instance}] ` : ""
  switch (command._tag) {
    case "Get":
      return `${on}get(${show(command.key)})`
    case "GetMany":
      return `${on}getMany([${command.keys.map(show).join(", ")}])`
    case "Write":
      return `${on}write(${show(command.key)}, ${show(command.value)})`
    case "Fork":
      return `fork ${describe(command.command, show)}`
    case "Interrupt":
      return `${on}get(${show(command.key)}) interrupted after ${command.afterYields} yields`
    case "Yield":
      return `yield ${command.times}`
    case "Tick":
      return `tick ${Duration.format(command.duration)}`
    case "Store":
      return `store ${Faults.describe(command.fault)}`
    case "Lookup":
      return `lookup ${Faults.describe(command.fault)}`
    case "Settle":
      return "settle (wait for forked operations)"
    case "Race":
      return `race: fork [${command.reader}] get(${show(command.key)}), [${command.writer}] write(${
        show(command.key)
      }, ${show(command.value)}), [${command.reader}] get(${show(command.key)})`
  }
}

/**
 * Formats keys and values: strings and plain data as JSON, class instances with their `toString`.
 *
 * @example
 * ```ts
 * import { Property } from "@cache-aside/core/testing"
 * Property.defaultShow("a") // "\"a\""
 * ```
 *
 * @since 0.1.0
 */
export const defaultShow = (value: unknown): string => {
  if (value === null || typeof value !== "object") {
    return typeof value === "bigint"
      ? `${value}n`
      : JSON.stringify(value)
  }
  if (Object.getPrototypeOf(value) === Object.prototype || Array.isArray(value)) {
    try {
      return JSON.stringify(value)
    } catch {
      return String(value)
    }
  }
  return String(value)
}

/**
 * Runs the property: `runs` random sequences against a fresh system each, stopping at the first
 * that breaks it, shrunk to a short counterexample. Succeeds with what it ran; fails with
 * `CounterExample`.
 *
 * @example
 * ```ts
 * import { Effect, FastCheck, Option, Schema } from "effect"
 * import { CacheAside } from "@cache-aside/core"
 * import { Property } from "@cache-aside/core/testing"
 *
 * const check = Property.check({
 *   keys: FastCheck.integer({ min: 1, max: 3 }),
 *   values: FastCheck.string({ maxLength: 3 }),
 *   make: (db) =>
 *     Effect.gen(function* () {
 *       const cache = yield* CacheAside.make({
 *         namespace: "user",
 *         key: (id: number) => String(id),
 *         schema: Schema.String,
 *         lookup: db.source,
 *         ttl: "1 hour"
 *       })
 *       // the application's write path: the database first, then the cache
 *       const write = (id: number, name: string) => Effect.zipRight(db.write(id, name), cache.invalidate(id))
 *       return { cache, write }
 *     })
 * })
 * // in a test: it.effect("the user cache is consistent", () => check)
 * ```
 *
 * @since 0.1.0
 */
export const check = <K, A, E, R>(
  options: Options<K, A, E, R>
): Effect.Effect<Report, CounterExample, Exclude<R, Provided>> =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<Exclude<R, Provided>>()
    const seed = options.seed ?? 42
    const runs = options.runs ?? 100
    const show = options.show ?? defaultShow
    /** One run: a fresh clock, store, database and system; the first violation, if any. */
    /**
     * One run: a fresh clock, store, database and systems in a scope of their own, closed while the
     * clock is driven (a shutdown that waits on the clock, or hangs, is part of the run); the first
     * violation, if any.
     */
    const runOnce = (sequence: ReadonlyArray<Command<K, A>>) =>
      Effect.suspend((): Effect.Effect<string | undefined, unknown, Exclude<R, Provided>> => {
        const clock = new VirtualClock(startTime)
        return Effect.flatMap(Scope.make(), (scope) =>
          Effect.gen(function*() {
            const store = yield* Layer.buildWithScope(TestStore.layer(options.store ?? { resilient: true }), scope)
            const runner = yield* Runner.make(options, show, clock).pipe(Effect.provide(store), Scope.extend(scope))
            const violation = yield* runner.run(sequence, (command) => describe(command, show))
            return yield* runner.close(scope, violation)
          }).pipe(
            Effect.onError((cause) => Effect.asVoid(Effect.forkDaemon(Scope.close(scope, Exit.failCause(cause))))),
            Effect.withClock(clock),
            Effect.withRandom(Random.make(seed))
          )) as Effect.Effect<string | undefined, unknown, Exclude<R, Provided>>
      })
    const property = FastCheck.asyncProperty(commands(options), async (sequence) => {
      const violation = await Runtime.runPromise(runtime)(runOnce(sequence))
      if (violation !== undefined) throw new Violation(violation)
    })
    const details = yield* Effect.promise(() =>
      FastCheck.check(property, {
        seed,
        numRuns: runs,
        examples: (options.examples ?? []).map((sequence) => [[...sequence]])
      })
    )
    if (!details.failed) return { runs: details.numRuns, seed }
    const error = details.errorInstance
    return yield* new CounterExample({
      violation: error instanceof Violation ? error.message : `the run failed: ${String(error)}`,
      commands: (details.counterexample?.[0] ?? []).map((command) => describe(command, show)),
      seed,
      shrinks: details.numShrinks
    })
  })

class Violation extends Error {}
