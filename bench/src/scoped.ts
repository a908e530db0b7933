/**
 * A value built on a `ManagedRuntime` inside a `Scope` of its own: `CacheAside.make` needs a Scope
 * (it owns background fibers), and a benchmark that calls it through Promises keeps that scope open
 * until it closes the contender.
 */
import type * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as ManagedRuntime from "effect/ManagedRuntime"
import * as Scope from "effect/Scope"

export interface Scoped<A> {
  readonly value: A
  /** Closes the scope (stopping what the value runs in the background), then disposes the runtime. */
  readonly close: () => Promise<void>
}

/** Runs `make` on `runtime` in a new scope; `close` closes the scope, then disposes the runtime. */
export const makeScoped = async <A, E, R, ER>(
  runtime: ManagedRuntime.ManagedRuntime<R, ER>,
  make: Effect.Effect<A, E, R | Scope.Scope>
): Promise<Scoped<A>> => {
  const scope = await runtime.runPromise(Scope.make())
  try {
    const value = await runtime.runPromise(Scope.extend(make, scope))
    return {
      value,
      close: async () => {
        await runtime.runPromise(Scope.close(scope, Exit.void))
        await runtime.dispose()
      }
    }
  } catch (error) {
    await runtime.runPromise(Scope.close(scope, Exit.void))
    await runtime.dispose()
    throw error
  }
}
