/**
 * Single-key reads and lease-reads gathered into batches, over any function that reads many keys in
 * one round trip (the Redis client's bounded read script).
 *
 * @internal
 */
import type { CacheUnavailable } from "@cache-aside/core/CacheStore"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { microtask } from "./commands.js"

type Read = (result: Effect.Effect<Option.Option<Uint8Array>, CacheUnavailable>) => void

/**
 * What a read answers for one key: the value or `None`, or an `Error` when only that key failed (a
 * lease the server refused to write: `OOM`, `NOPERM`).
 *
 * @internal
 */
export type Answer = Option.Option<Uint8Array> | Error

/**
 * A lease to put under an absent key: the value and its time-to-live in milliseconds.
 *
 * @internal
 */
export interface Lease {
  /** The lease's bytes; as a string when they are ASCII (a command of strings only is cheaper to write). */
  readonly value: Buffer | string
  readonly millis: number
}

/**
 * The reads a batcher sends: `keys` (plain reads first, then lease-reads), `leases` for the last
 * `leases.length` keys, in order; answers aligned with `keys`. `lease` is `undefined` for a plain read.
 *
 * @internal
 */
export interface Reader {
  readonly many: (keys: ReadonlyArray<string>, leases: ReadonlyArray<Lease>) => Promise<ReadonlyArray<Answer>>
  readonly one: (key: string, lease: Lease | undefined) => Promise<Answer>
}

const settle = (
  resume: Read,
  answer: Answer | undefined,
  refused: (cause: unknown) => CacheUnavailable
): void => {
  if (answer instanceof Error) resume(Effect.fail(refused(answer)))
  else resume(Effect.succeed(answer ?? Option.none()))
}

const failAll = (waiters: ReadonlyArray<Read>, error: CacheUnavailable): void => {
  const failed = Effect.fail(error)
  for (const waiter of waiters) waiter(failed)
}

/**
 * Single-key reads and lease-reads, batched: the first one of a turn goes out at once (through
 * `reader.one`, which answers one value without a list); every other one asked for while the
 * current batch of fibers runs goes out as ONE script call when they yield (a microtask), so 64
 * concurrent gets cost two commands instead of 64, and a lone get adds no delay. Lease-reads share
 * the batch's call: they are sent after its plain reads, with their leases. This is what ioredis'
 * auto-pipelining does for any command, but without its per-batch pipeline object and its
 * `setImmediate` delay, which double the cost of a sequential get.
 *
 * @internal
 */
export const readBatcher = (
  reader: Reader,
  failGet: (cause: unknown) => CacheUnavailable,
  failLease: (cause: unknown) => CacheUnavailable,
  /** A lease-read whose read worked but whose lease the server refused (the key was absent). */
  refusedLease: (cause: unknown) => CacheUnavailable
) => {
  let keys: Array<string> = []
  let waiters: Array<Read> = []
  let leaseKeys: Array<string> = []
  let leases: Array<Lease> = []
  let leaseWaiters: Array<Read> = []
  const flush = () => {
    const batch = waiters
    const leased = leaseWaiters
    const batchKeys = leased.length === 0 ? keys : keys.concat(leaseKeys)
    const batchLeases = leases
    keys = []
    waiters = []
    if (leased.length > 0) {
      leaseKeys = []
      leases = []
      leaseWaiters = []
    }
    const failed = (cause: unknown) => {
      failAll(batch, failGet(cause))
      failAll(leased, failLease(cause))
    }
    try {
      reader.many(batchKeys, batchLeases).then((answers) => {
        for (let i = 0; i < batch.length; i++) settle(batch[i]!, answers[i], failGet)
        for (let i = 0; i < leased.length; i++) settle(leased[i]!, answers[batch.length + i], refusedLease)
      }, failed)
    } catch (cause) {
      // a client that throws instead of rejecting fails these reads, never the process (this runs
      // in a microtask, where a throw would be an unhandled rejection)
      failed(cause)
    }
  }
  let scheduled = false
  const flushLater = () => {
    scheduled = false
    if (waiters.length > 0 || leaseWaiters.length > 0) flush()
  }
  /** `true` when this read went out at once (the first of its turn). */
  const first = (key: string, lease: Lease | undefined, resume: Read): boolean => {
    if (scheduled) return false
    // the first read of a turn goes out at once (no added latency for a lone get); reads that
    // follow in the same turn gather into one call sent when the turn yields
    scheduled = true
    microtask(flushLater)
    const fail = lease === undefined ? failGet : failLease
    try {
      reader.one(key, lease).then(
        (answer) => settle(resume, answer, refusedLease),
        (cause) => resume(Effect.fail(fail(cause)))
      )
    } catch (cause) {
      // a client that throws instead of rejecting: this read fails, as a rejection would fail it
      resume(Effect.fail(fail(cause)))
    }
    return true
  }
  return {
    get: (key: string): Effect.Effect<Option.Option<Uint8Array>, CacheUnavailable> =>
      Effect.async((resume) => {
        if (first(key, undefined, resume)) return
        keys.push(key)
        waiters.push(resume)
      }),
    getOrLease: (key: string, lease: Lease): Effect.Effect<Option.Option<Uint8Array>, CacheUnavailable> =>
      Effect.async((resume) => {
        if (first(key, lease, resume)) return
        leaseKeys.push(key)
        leases.push(lease)
        leaseWaiters.push(resume)
      })
  }
}
