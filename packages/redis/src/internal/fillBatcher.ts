/**
 * Compare-and-set writes (the fills of loaded values under their leases) gathered into batches:
 * the first fill of a turn goes out at once, alone (a lone miss adds no delay); every other one
 * asked for in the same turn (concurrent misses whose loads ended together) goes out as ONE
 * `compareAndSetMany` script call when the turn yields (a microtask). One refused write (`OOM`)
 * fails its own fill only.
 *
 * @internal
 */
import type { CacheUnavailable } from "@cache-aside/core/CacheStore"
import * as Effect from "effect/Effect"
import type { Arg, Script } from "./commands.js"
import * as scripts from "./scripts.js"

type Resume = (result: Effect.Effect<boolean, CacheUnavailable>) => void

/** What `compareAndSetMany` answers for one key: written or not, or the key's error reply. */
type Reply = number | Error

/** The commands a fill batcher sends (the client's `sender`). @internal */
export interface Sender {
  readonly evalScript: <A>(
    script: Script,
    args: Array<Arg>,
    buffers: boolean,
    onReply: (reply: unknown) => A
  ) => Promise<A>
}

const asReplies = (reply: unknown): ReadonlyArray<Reply> => reply as ReadonlyArray<Reply>

/** @internal */
export const fillBatcher = (
  send: Sender,
  one: Script,
  many: Script,
  fail: (cause: unknown) => CacheUnavailable
) => {
  let args: Array<Arg> = []
  let keys: Array<string> = []
  let waiters: Array<Resume> = []
  let scheduled = false

  const sendChunk = (chunkKeys: ReadonlyArray<string>, chunkArgs: ReadonlyArray<Arg>, chunk: ReadonlyArray<Resume>) =>
    send.evalScript(many, [many.sha, chunkKeys.length, ...chunkKeys, ...chunkArgs], false, asReplies).then(
      (replies) => {
        for (let i = 0; i < chunk.length; i++) {
          const reply = replies[i]
          chunk[i]!(reply instanceof Error ? Effect.fail(fail(reply)) : Effect.succeed(reply === 1))
        }
      },
      (cause) => {
        const failed = Effect.fail(fail(cause))
        for (const resume of chunk) resume(failed)
      }
    )

  const flush = () => {
    scheduled = false
    if (waiters.length === 0) return
    const batchKeys = keys
    const batchArgs = args
    const batch = waiters
    keys = []
    args = []
    waiters = []
    const limit = scripts.fillBatchLimit
    for (let i = 0; i < batch.length; i += limit) {
      sendChunk(batchKeys.slice(i, i + limit), batchArgs.slice(3 * i, 3 * (i + limit)), batch.slice(i, i + limit))
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
        if (scheduled) {
          keys.push(key)
          args.push(expectedSha1, value, millis)
          waiters.push(resume)
          return
        }
        scheduled = true
        queueMicrotask(flush)
        send.evalScript(one, [one.sha, 1, key, expectedSha1, value, millis], false, (reply) => reply === 1).then(
          (written) => resume(Effect.succeed(written)),
          (cause) => resume(Effect.fail(fail(cause)))
        )
      })
  }
}
