/**
 * Single-key reads gathered into batches, over any function that reads many keys in one round
 * trip (the Redis client's bounded read script).
 *
 * @internal
 */
import type { CacheUnavailable } from "@cache-aside/core/CacheStore"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"

type Read = (result: Effect.Effect<Option.Option<Uint8Array>, CacheUnavailable>) => void

/**
 * Single-key reads, batched: the first read of a turn goes out at once (through `readOne`, which
 * answers one value without a list); every other one asked for
 * while the current batch of fibers runs goes out as ONE script call when they yield (a microtask),
 * so 64 concurrent gets cost two commands instead of 64, and a lone get adds no delay. This is what
 * ioredis' auto-pipelining does for any command, but without its per-batch pipeline object and its
 * `setImmediate` delay, which double the cost of a sequential get.
 *
 * @internal
 */
export const readBatcher = (
  read: (keys: ReadonlyArray<string>) => Promise<Array<Option.Option<Uint8Array>>>,
  readOne: (key: string) => Promise<Option.Option<Uint8Array>>,
  fail: (cause: unknown) => CacheUnavailable
) => {
  let keys: Array<string> = []
  let waiters: Array<Read> = []
  const failAll = (batch: ReadonlyArray<Read>) => (cause: unknown) => {
    const error = Effect.fail(fail(cause))
    for (const waiter of batch) waiter(error)
  }
  const flush = () => {
    const batchKeys = keys
    const batch = waiters
    keys = []
    waiters = []
    read(batchKeys).then((values) => {
      for (let i = 0; i < batch.length; i++) batch[i]!(Effect.succeed(values[i] ?? Option.none()))
    }, failAll(batch))
  }
  let scheduled = false
  const flushLater = () => {
    scheduled = false
    if (waiters.length > 0) flush()
  }
  return (key: string): Effect.Effect<Option.Option<Uint8Array>, CacheUnavailable> =>
    Effect.async((resume) => {
      if (!scheduled) {
        // the first read of a turn goes out at once (no added latency for a lone get); reads that
        // follow in the same turn gather into one call sent when the turn yields
        scheduled = true
        queueMicrotask(flushLater)
        readOne(key).then(
          (value) => resume(Effect.succeed(value)),
          (cause) => resume(Effect.fail(fail(cause)))
        )
        return
      }
      keys.push(key)
      waiters.push(resume)
    })
}
