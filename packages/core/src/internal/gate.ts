/**
 * A gate of `permits` places: at most that many effects run through it at once; the others wait
 * in arrival order. It bounds a cache's concurrent lookups (`lookupConcurrency`).
 *
 * Why not `Effect.Semaphore`: a lookup passes the gate on every miss, and through a semaphore that
 * costs about 7 µs of CPU per pass (its `take`, `ensuring` and release bookkeeping), a twentieth of
 * a whole miss; a free place here costs one mask and one match. The price is hand-written waiting,
 * so the invariants are spelled out and a property test interrupts callers at random points:
 *
 * - `free > 0` only while nobody waits: a released place goes to the first waiter directly
 *   (`granted`), never back to `free` while someone waits, so no newcomer overtakes a waiter;
 * - a place is taken and given back in the same uninterruptible region that runs the effect's
 *   exit, so every exit (success, failure, interrupt) gives it back exactly once;
 * - a waiter interrupted after it was granted a place, before it used it, passes the place on.
 *
 * @internal
 */
import * as Effect from "effect/Effect"

interface Waiter {
  /** Set when a released place was handed to this waiter. */
  granted: boolean
  resume: (() => void) | undefined
}

/** @internal */
export class Gate {
  private free: number
  private readonly queue: Array<Waiter> = []
  constructor(readonly permits: number) {
    this.free = permits
  }

  /** Places free now. */
  get available(): number {
    return this.free
  }

  /** Callers waiting for a place. */
  get waiting(): number {
    return this.queue.length
  }

  /** Runs `effect` holding a place, given back on every exit. */
  run<X, Y, Z>(effect: Effect.Effect<X, Y, Z>): Effect.Effect<X, Y, Z> {
    return Effect.uninterruptibleMask((restore) => {
      if (this.free > 0) {
        this.free--
        return this.holding(restore(effect))
      }
      const waiter: Waiter = { granted: false, resume: undefined }
      return Effect.matchCauseEffect(restore(this.wait(waiter)), {
        onFailure: (cause) => {
          // interrupted while waiting: a place handed over meanwhile goes on to the next waiter
          if (waiter.granted) this.release()
          return Effect.failCause(cause)
        },
        onSuccess: () => this.holding(restore(effect))
      })
    })
  }

  /** Waits until `release` hands this waiter a place; an interrupt before that leaves the queue. */
  private wait(waiter: Waiter): Effect.Effect<void> {
    return Effect.async<void>((resume) => {
      waiter.resume = () => resume(Effect.void)
      this.queue.push(waiter)
      return Effect.sync(() => {
        const at = this.queue.indexOf(waiter)
        if (at >= 0) this.queue.splice(at, 1)
      })
    })
  }

  /** `effect` (already restored), its place given back when it exits. Called in `run`'s mask. */
  private holding<X, Y, Z>(effect: Effect.Effect<X, Y, Z>): Effect.Effect<X, Y, Z> {
    return Effect.matchCauseEffect(effect, {
      onFailure: (cause) => {
        this.release()
        return Effect.failCause(cause)
      },
      onSuccess: (value) => {
        this.release()
        return Effect.succeed(value)
      }
    })
  }

  private release(): void {
    const next = this.queue.shift()
    if (next === undefined) {
      this.free++
      return
    }
    next.granted = true
    next.resume!()
  }
}
