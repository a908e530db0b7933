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
    const batchKeys = keys
    const batchArgs = args
    const batch = waiters
    keys = []
    args = []
    waiters = []
    if (batch.length === 1) {
      send.evalScript(one, [one.sha, 1, batchKeys[0]!, ...batchArgs], false, (reply) => reply === 1).then(
        (written) => batch[0]!(Effect.succeed(written)),
        (cause) => batch[0]!(Effect.fail(fail(cause)))
      )
      return
    }
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
        keys.push(key)
        args.push(expectedSha1, value, millis)
        waiters.push(resume)
        if (!scheduled) {
          scheduled = true
          setImmediate(flush)
        }
      })
  }
}
