/**
 * Compare-and-set writes (the fills of loaded values under their leases) gathered into batches:
 * every fill asked for in one phase of the event loop goes out when it ends (`setImmediate`), in
 * ONE call: the single-key script for a lone fill, `compareAndSetMany` for more. Unlike reads,
 * fills are not sent at once: the loads of concurrent misses end in different turns (each on its
 * own I/O or timer callback), so gathering by turn would send each alone, one socket write (a
 * system call) per miss; gathered by phase, the fills of the loads that ended together share one.
 * One refused write (`OOM`) fails its own fill only.
 *
 * @internal
 */
import type { CacheUnavailable } from "@cache-aside/core/CacheStore"
import * as Effect from "effect/Effect"
import { isOne } from "./commands.js"
import type { Arg, Script, Sender } from "./commands.js"
import * as scripts from "./scripts.js"

type Resume = (result: Effect.Effect<boolean, CacheUnavailable>) => void

/** What `compareAndSetMany` answers for one key: written or not, or the key's error reply. */
type Reply = number | Error

/**
 * The real `setImmediate`, taken when this module loads: a test that fakes timers afterwards
 * (`vi.useFakeTimers()`, which fakes `setImmediate` by default) must not leave every fill waiting
 * for a clock nobody advances.
 */
const atPhaseEnd: (flush: () => void) => void = globalThis.setImmediate

const asReplies = (reply: unknown): ReadonlyArray<Reply> => reply as ReadonlyArray<Reply>

interface Fill {
  readonly key: string
  readonly expectedSha1: string
  readonly value: Buffer
  readonly millis: number
  readonly resume: Resume
}

/**
 * The fills of one flush cut into calls: at most `fillBatchLimit` fills and about `fillBatchBytes`
 * of values per call (a value larger than that goes alone), so a batch of large entries never
 * makes one command Redis would refuse (its query buffer limit) or take long to run.
 */
const chunksOf = (fills: ReadonlyArray<Fill>): Array<ReadonlyArray<Fill>> => {
  const chunks: Array<ReadonlyArray<Fill>> = []
  let chunk: Array<Fill> = []
  let bytes = 0
  for (const fill of fills) {
    const size = fill.value.length
    if (chunk.length > 0 && (chunk.length >= scripts.fillBatchLimit || bytes + size > scripts.fillBatchBytes)) {
      chunks.push(chunk)
      chunk = []
      bytes = 0
    }
    chunk.push(fill)
    bytes += size
  }
  if (chunk.length > 0) chunks.push(chunk)
  return chunks
}

/** @internal */
export const fillBatcher = (
  send: Sender,
  one: Script,
  many: Script,
  fail: (cause: unknown) => CacheUnavailable
) => {
  let pending: Array<Fill> = []

  const sendOne = (fill: Fill) =>
    send.evalScript(one, [one.sha, 1, fill.key, fill.expectedSha1, fill.value, fill.millis], false, isOne).then(
      (written) => fill.resume(Effect.succeed(written)),
      (cause) => fill.resume(Effect.fail(fail(cause)))
    )

  const sendMany = (chunk: ReadonlyArray<Fill>) => {
    const args: Array<Arg> = [many.sha, chunk.length]
    for (const fill of chunk) args.push(fill.key)
    for (const fill of chunk) args.push(fill.expectedSha1, fill.value, fill.millis)
    send.evalScript(many, args, false, asReplies).then(
      (replies) => {
        for (let i = 0; i < chunk.length; i++) {
          const reply = replies[i]
          chunk[i]!.resume(reply instanceof Error ? Effect.fail(fail(reply)) : Effect.succeed(reply === 1))
        }
      },
      (cause) => {
        const failed = Effect.fail(fail(cause))
        for (const fill of chunk) fill.resume(failed)
      }
    )
  }

  const flush = () => {
    const batch = pending
    pending = []
    for (const chunk of chunksOf(batch)) {
      try {
        if (chunk.length === 1) sendOne(chunk[0]!)
        else sendMany(chunk)
      } catch (cause) {
        // a client that throws instead of rejecting fails these fills, never the process (this
        // runs in a `setImmediate` callback, where a throw would be uncaught)
        const failed = Effect.fail(fail(cause))
        for (const fill of chunk) fill.resume(failed)
      }
    }
  }

  return {
    /** Sets `key` to `value` with `PX millis` only if its value's SHA-1 is `expectedSha1`; `true` when written. */
    compareAndSet: (
      key: string,
      expectedSha1: string,
      value: Buffer,
      millis: number
    ): Effect.Effect<boolean, CacheUnavailable> =>
      Effect.async<boolean, CacheUnavailable>((resume) => {
        if (pending.length === 0) atPhaseEnd(flush)
        pending.push({ key, expectedSha1, value, millis, resume })
      })
  }
}
