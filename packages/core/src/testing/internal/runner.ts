/**
 * Runs one command sequence of the model-based property against a fresh system and checks every
 * answer against the database's history.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Equal from "effect/Equal"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as MutableHashMap from "effect/MutableHashMap"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as CacheBus from "../../CacheBus.js"
import type { CacheStore } from "../../CacheStore.js"
import { FaultInjection } from "../../FaultInjection.js"
import type { Metrics } from "../../Metrics.js"
import * as Database from "../Database.js"
import * as Faults from "../Faults.js"
import type { Command, Operation, Options, System } from "../Property.js"
import type { VirtualClock } from "./virtualClock.js"

/**
 * A read in flight: for each key, every value the key could rightly be read as. A read of a key
 * that an earlier read of the same instance is still loading may share that read's answer (single
 * flight), unless that instance wrote the key since (its invalidation detaches the flight); a write
 * by another instance cannot detach it, so until the flight ends its older answer is allowed.
 */
interface Read<K, A> {
  readonly _tag: "Read"
  readonly label: string
  readonly instance: number
  readonly keys: ReadonlyArray<K>
  readonly allowed: Array<Array<Option.Option<A>>>
  readonly joinable: Array<boolean>
  lookupFault: boolean
  exit: Exit.Exit<ReadonlyArray<Option.Option<A>>, unknown> | undefined
}

/** A write in flight: the values it replaced stay readable until it completes (its invalidation is pending). */
interface Write<K, A> {
  readonly _tag: "Write"
  readonly label: string
  readonly instance: number
  readonly key: K
  readonly replaced: Array<Option.Option<A>>
  exit: Exit.Exit<void, unknown> | undefined
}

type Op<K, A> = Read<K, A> | Write<K, A>

interface Started<K, A> {
  readonly op: Op<K, A>
  readonly fiber: Fiber.RuntimeFiber<void>
}

/** Scheduler turns given to other fibers before the clock moves. */
const turns = 16
/** Scheduler turns a forked operation gets at once: enough to reach its first wait through the resilient store. */
const forkTurns = 64
/** Rounds with nothing scheduled on the clock and no progress before an operation counts as deadlocked. */
const idleRounds = 50

/** @internal */
export class Runner<K, A, E> {
  static make<K, A, E, R>(
    options: Options<K, A, E, R>,
    show: (value: unknown) => string,
    clock: VirtualClock
  ): Effect.Effect<Runner<K, A, E>, unknown, R | CacheStore | FaultInjection | Metrics | Scope.Scope> {
    return Effect.gen(function*() {
      const rows = [...(options.rows ?? [])]
      const database = yield* Database.make(rows, { latency: options.lookupLatency ?? "10 millis" })
      const runner = new Runner<K, A, E>(
        database,
        yield* FaultInjection,
        clock,
        show,
        Duration.toMillis(Duration.decode(options.maxWait ?? "10 minutes")),
        MutableHashMap.fromIterable(rows.map(([key, value]) => [key, Option.some(value)] as const))
      )
      database.onWrite((key, value) => runner.written(key, value))
      // the instances share a bus, as processes share Redis pub/sub: near caches stay coherent
      const hub = CacheBus.makeMemoryHub()
      for (let i = 0; i < Math.max(1, options.instances ?? 2); i++) {
        runner.systems.push(yield* Effect.provideService(options.make(database), CacheBus.CacheBus, hub.instance()))
      }
      return runner
    })
  }

  /** One system per instance (process), over the same store and database. */
  readonly systems: Array<System<K, A, E>> = []
  private readonly inFlight: Array<Op<K, A>> = []
  private readonly background: Array<Started<K, A>> = []
  private readonly interrupted: Array<Fiber.RuntimeFiber<void>> = []
  private readonly usedKeys = MutableHashMap.empty<K, true>()
  private violation: string | undefined

  private constructor(
    readonly database: Database.Database<K, A>,
    readonly faults: FaultInjection["Type"],
    readonly clock: VirtualClock,
    readonly show: (value: unknown) => string,
    readonly maxWaitMillis: number,
    /** The database's rows as the model sees them, kept current by the write hook. */
    readonly model: MutableHashMap.MutableHashMap<K, Option.Option<A>>
  ) {}

  private current(key: K): Option.Option<A> {
    return Option.flatten(MutableHashMap.get(this.model, key))
  }

  /** The write hook: reads in flight may see the new row; writes in flight keep the replaced one readable. */
  written(key: K, value: Option.Option<A>): void {
    const replaced = this.current(key)
    MutableHashMap.set(this.model, key, value)
    for (const op of this.inFlight) {
      if (op._tag === "Read") {
        op.keys.forEach((k, i) => {
          if (Equal.equals(k, key)) op.allowed[i]!.push(value)
        })
      } else if (Equal.equals(op.key, key)) {
        op.replaced.push(replaced)
      }
    }
  }

  /** What a read of `key` by `instance` starting now may answer. */
  private readable(instance: number, key: K): Array<Option.Option<A>> {
    const values = [this.current(key)]
    for (const op of this.inFlight) {
      if (op._tag === "Write") {
        if (Equal.equals(op.key, key)) values.push(...op.replaced)
      } else if (op.instance === instance) {
        op.keys.forEach((k, i) => {
          if (op.joinable[i] && Equal.equals(k, key)) values.push(...op.allowed[i]!)
        })
      }
    }
    return values
  }

  /** A write by `instance` detaches that instance's reads of the key in flight (they cannot be joined any more). */
  private detach(instance: number, key: K): void {
    for (const op of this.inFlight) {
      if (op._tag === "Read" && op.instance === instance) {
        op.keys.forEach((k, i) => {
          if (Equal.equals(k, key)) op.joinable[i] = false
        })
      }
    }
  }

  private finish(op: Op<K, A>) {
    const i = this.inFlight.indexOf(op)
    if (i >= 0) this.inFlight.splice(i, 1)
  }

  /** Starts an operation in its own fiber; its outcome is recorded the moment it ends. */
  private start(command: Operation<K, A>, label: string): Effect.Effect<Started<K, A>> {
    return Effect.suspend((): Effect.Effect<Started<K, A>> => {
      if (command._tag === "Write") {
        MutableHashMap.set(this.usedKeys, command.key, true)
        const op: Write<K, A> = {
          _tag: "Write",
          label,
          instance: command.instance,
          key: command.key,
          replaced: [],
          exit: undefined
        }
        this.detach(command.instance, command.key)
        this.inFlight.push(op)
        const run = Effect.onExit(
          this.systems[command.instance]!.write(command.key, command.value),
          (exit) =>
            Effect.sync(() => {
              op.exit = exit
              this.finish(op)
            })
        )
        return Effect.map(Effect.fork(Effect.ignore(run)), (fiber) => ({ op, fiber }))
      }
      const keys = command._tag === "Get" ? [command.key] : command.keys
      for (const key of keys) MutableHashMap.set(this.usedKeys, key, true)
      const op: Read<K, A> = {
        _tag: "Read",
        label,
        instance: command.instance,
        keys,
        allowed: keys.map((key) => this.readable(command.instance, key)),
        joinable: keys.map(() => true),
        lookupFault: this.database.faulty(),
        exit: undefined
      }
      this.inFlight.push(op)
      const read: Effect.Effect<ReadonlyArray<Option.Option<A>>, E> = command._tag === "Get"
        ? Effect.map(this.systems[command.instance]!.cache.get(command.key), (value) => [value])
        : this.systems[command.instance]!.cache.getMany(command.keys)
      const run = Effect.onExit(read, (exit) =>
        Effect.sync(() => {
          op.exit = exit
          this.finish(op)
        }))
      return Effect.map(Effect.fork(Effect.ignore(run)), (fiber) => ({ op, fiber }))
    })
  }

  private fail(message: string): void {
    if (this.violation === undefined) this.violation = message
  }

  private showOption(value: Option.Option<A>): string {
    return Option.isSome(value) ? `Some(${this.show(value.value)})` : "None"
  }

  /** Checks a completed operation against the model. */
  private check(op: Op<K, A>): void {
    const exit: Exit.Exit<unknown, unknown> | undefined = op.exit
    if (exit === undefined || Exit.isInterrupted(exit)) return
    if (Exit.isFailure(exit)) {
      const expected = op._tag === "Read" && op.lookupFault && Option.isSome(Cause.failureOption(exit.cause))
      if (op._tag === "Write" && !Cause.isDie(exit.cause)) return // a stale read after it will tell
      if (!expected) this.fail(`${op.label} failed: ${Cause.pretty(exit.cause)}`)
      return
    }
    if (op._tag === "Write") return
    const values = exit.value as ReadonlyArray<Option.Option<A>>
    op.keys.forEach((key, i) => {
      const value = values[i]
      const allowed = op.allowed[i]!
      if (value === undefined || !allowed.some((candidate) => Equal.equals(candidate, value))) {
        this.fail(
          `${op.label} answered ${value === undefined ? "nothing" : this.showOption(value)} for ${this.show(key)}, ` +
            `but the database held ${allowed.map((v) => this.showOption(v)).join(" or ")} while it ran (stale)`
        )
      }
    })
  }

  /** Lets other fibers run; when the operation is still waiting, moves the clock to the next wake-up. */
  private settle(
    op: Op<K, A> | undefined,
    fiber: Fiber.RuntimeFiber<void>,
    what = op?.label ?? "an interrupted get"
  ): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      const start = this.clock.unsafeCurrentTimeMillis()
      let idle = 0
      while (true) {
        for (let i = 0; i < turns; i++) yield* Effect.yieldNow()
        if (fiber.unsafePoll() !== null) return
        const next = this.clock.next()
        if (next === undefined) {
          if (++idle > idleRounds) return this.fail(`${what} never completed (deadlock)`)
        } else if (next - start > this.maxWaitMillis) {
          return this.fail(`${what} did not complete within ${this.maxWaitMillis} ms`)
        } else {
          yield* this.clock.advanceTo(next)
        }
      }
    })
  }

  private settleBackground(): Effect.Effect<void> {
    return Effect.suspend(() => {
      const all = this.background.splice(0)
      return Effect.forEach(all, ({ fiber, op }) =>
        Effect.suspend(() => {
          if (this.violation !== undefined) return Effect.void
          return Effect.map(this.settle(op, fiber), () => this.check(op))
        }), { discard: true })
    })
  }

  private execute(command: Command<K, A>, label: string): Effect.Effect<void> {
    switch (command._tag) {
      case "Get":
      case "GetMany":
      case "Write":
        return Effect.flatMap(
          this.start(command, label),
          ({ fiber, op }) => Effect.map(this.settle(op, fiber), () => this.check(op))
        )
      case "Fork":
        // the forked operation runs until it waits (on the clock, or on another operation)
        return Effect.flatMap(this.start(command.command, label), (started) => {
          this.background.push(started)
          return Effect.repeatN(Effect.yieldNow(), forkTurns - 1)
        })
      case "Interrupt":
        return Effect.gen(this, function*() {
          MutableHashMap.set(this.usedKeys, command.key, true)
          const fiber = yield* Effect.fork(Effect.ignore(this.systems[command.instance]!.cache.get(command.key)))
          for (let i = 0; i < command.afterYields; i++) yield* Effect.yieldNow()
          yield* Fiber.interruptFork(fiber)
          this.interrupted.push(fiber)
        })
      case "Yield":
        return Effect.repeatN(Effect.yieldNow(), command.times - 1)
      case "Tick":
        return Effect.zipRight(this.clock.advance(command.duration), Effect.repeatN(Effect.yieldNow(), turns - 1))
      case "Store":
        return Faults.applyStoreFault(this.faults, command.fault)
      case "Lookup":
        return Effect.sync(() => {
          if (command.fault._tag !== "Healthy") {
            for (const op of this.inFlight) if (op._tag === "Read") op.lookupFault = true
          }
        }).pipe(Effect.zipRight(this.database.setFault(command.fault)))
      case "Settle":
        return this.settleBackground()
      case "Race": {
        const { key, reader, value, writer } = command
        return Effect.zipRight(
          Effect.zipRight(
            this.execute({ _tag: "Fork", command: { _tag: "Get", instance: reader, key } }, `${label}: the forked get`),
            this.execute({ _tag: "Write", instance: writer, key, value }, `${label}: the write`)
          ),
          this.execute({ _tag: "Get", instance: reader, key }, `${label}: the get after the write`)
        )
      }
    }
  }

  /** Closes the run's scope (caches, their background work, the store) while driving the clock. */
  close(scope: Scope.CloseableScope, violation: string | undefined): Effect.Effect<string | undefined> {
    return Effect.gen(this, function*() {
      const closing = yield* Effect.forkDaemon(Scope.close(scope, Exit.void))
      yield* this.settle(undefined, closing, "closing the scope of the caches and the store")
      return violation ?? this.violation
    })
  }

  /** Runs the sequence, then heals everything, waits for what is left and reads every key used once more. */
  run(sequence: ReadonlyArray<Command<K, A>>, describe: (command: Command<K, A>) => string): Effect.Effect<
    string | undefined
  > {
    return Effect.gen(this, function*() {
      for (let i = 0; i < sequence.length && this.violation === undefined; i++) {
        yield* this.execute(sequence[i]!, `step ${i + 1} (${describe(sequence[i]!)})`)
      }
      if (this.violation !== undefined) return this.violation
      yield* this.faults.heal
      yield* this.database.setFault({ _tag: "Healthy" })
      yield* this.settleBackground()
      for (const fiber of this.interrupted.splice(0)) yield* this.settle(undefined, fiber)
      for (const key of MutableHashMap.keys(this.usedKeys)) {
        for (let instance = 0; instance < this.systems.length && this.violation === undefined; instance++) {
          const label = `the final [${instance}] get(${this.show(key)}) after every operation ended`
          yield* this.execute({ _tag: "Get", instance, key }, label)
        }
      }
      return this.violation
    })
  }
}
