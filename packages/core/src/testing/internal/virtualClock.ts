/**
 * A clock whose time only moves when the property moves it. Unlike `TestClock`, moving it does not
 * wait on real timers for every fiber to suspend (which costs milliseconds per wake-up): it wakes
 * the sleepers due, in order, giving the scheduler a few turns after each. Deterministic.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"

interface Sleeper {
  readonly at: number
  readonly seq: number
  readonly wake: () => void
}

/** Scheduler turns after each wake-up, so that the woken fiber runs to its next suspension. */
const turnsPerWake = 4

/** @internal */
export class VirtualClock implements Clock.Clock {
  readonly [Clock.ClockTypeId]: Clock.ClockTypeId = Clock.ClockTypeId
  private now: number
  private seq = 0
  private sleepers: Array<Sleeper> = []

  constructor(start: number) {
    this.now = start
  }

  unsafeCurrentTimeMillis(): number {
    return this.now
  }
  readonly currentTimeMillis: Effect.Effect<number> = Effect.sync(() => this.now)
  unsafeCurrentTimeNanos(): bigint {
    return BigInt(this.now) * 1_000_000n
  }
  readonly currentTimeNanos: Effect.Effect<bigint> = Effect.sync(() => this.unsafeCurrentTimeNanos())

  sleep(duration: Duration.Duration): Effect.Effect<void> {
    const millis = Duration.toMillis(duration)
    if (!(millis > 0)) return Effect.yieldNow()
    return Effect.async<void>((resume) => {
      const sleeper: Sleeper = { at: this.now + millis, seq: this.seq++, wake: () => resume(Effect.void) }
      this.sleepers.push(sleeper)
      return Effect.sync(() => {
        this.sleepers = this.sleepers.filter((other) => other !== sleeper)
      })
    })
  }

  /** The earliest wake-up scheduled, if any. */
  next(): number | undefined {
    let min: number | undefined
    for (const sleeper of this.sleepers) if (min === undefined || sleeper.at < min) min = sleeper.at
    return min
  }

  /** Moves time to `target`, waking every sleeper due on the way, in order. */
  advanceTo(target: number): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      while (true) {
        let due: Sleeper | undefined
        for (const sleeper of this.sleepers) {
          if (
            sleeper.at <= target &&
            (due === undefined || sleeper.at < due.at || (sleeper.at === due.at && sleeper.seq < due.seq))
          ) {
            due = sleeper
          }
        }
        if (due === undefined) break
        const woken = due
        this.sleepers = this.sleepers.filter((other) => other !== woken)
        this.now = Math.max(this.now, woken.at)
        woken.wake()
        for (let i = 0; i < turnsPerWake; i++) yield* Effect.yieldNow()
      }
      this.now = Math.max(this.now, target)
    })
  }

  /** Moves time forward by `duration`. */
  advance(duration: Duration.Duration): Effect.Effect<void> {
    return Effect.suspend(() => this.advanceTo(this.now + Duration.toMillis(duration)))
  }
}
