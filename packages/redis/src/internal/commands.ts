/**
 * Commands sent straight to an ioredis connection: one `Command` per call with shared options, no
 * `Pipeline` object and no `setImmediate` per command (what ioredis' auto-pipelining costs), and
 * the scripts run with `EVALSHA` on a precomputed SHA-1 (falling back to `EVAL` once when the
 * server does not know it: a new server, a `SCRIPT FLUSH`).
 *
 * Concurrent callers still share round trips: the first command of a turn is written at once, the
 * second corks the socket and a microtask uncorks it, so the commands written in the same turn
 * (64 fibers taking their leases after one batched read) leave in two writes, which Redis reads
 * as a pipeline. A lone command is written at once and pays no cork.
 *
 * @internal
 */
import { Command } from "ioredis"
import type { Redis } from "ioredis"
import { createHash } from "node:crypto"
import type { Socket } from "node:net"

type CommandOptions = NonNullable<ConstructorParameters<typeof Command>[2]>

/** @internal */
export type Arg = string | number | Buffer

/** A Lua script with its SHA-1, computed once. @internal */
export interface Script {
  readonly lua: string
  readonly sha: string
}

/** @internal */
export const script = (lua: string): Script => ({ lua, sha: createHash("sha1").update(lua).digest("hex") })

/** A script's `1` reply (written, deleted) as `true`. @internal */
export const isOne = (reply: unknown): boolean => reply === 1

const isNoScript = (error: unknown): boolean => error instanceof Error && error.message.startsWith("NOSCRIPT")

/**
 * A sender over one client: `send(name, args, buffers)` and `evalScript(script, args, buffers)`.
 * Keys get the client's `keyPrefix` from ioredis' `Command`, as with its own methods.
 *
 * @internal
 */
export const sender = (client: Redis) => {
  const keyPrefix = client.options.keyPrefix
  // shared, never mutated by `Command`
  const asBuffers: CommandOptions = keyPrefix ? { keyPrefix, replyEncoding: null } : { replyEncoding: null }
  const asStrings: CommandOptions = keyPrefix ? { keyPrefix, replyEncoding: "utf8" } : { replyEncoding: "utf8" }
  // `turn`: a command was written in this turn (a microtask clears it); `corked`: the socket held
  // from the second command of the turn on, released with the turn
  let turn = false
  let corked: Socket | undefined
  const endTurn = () => {
    turn = false
    const stream = corked
    corked = undefined
    stream?.uncork()
  }
  const send = (name: string, args: Array<Arg>, buffers: boolean): Promise<unknown> => {
    if (!turn) {
      // the first command of a turn is written at once: a lone command pays no cork
      turn = true
      queueMicrotask(endTurn)
    } else if (corked === undefined && client.status === "ready") {
      const stream = client.stream as Socket | undefined
      if (stream !== undefined && stream.writable) {
        stream.cork()
        corked = stream
      }
    }
    // `sendCommand` returns the command's promise (typed `unknown` by ioredis)
    return client.sendCommand(new Command(name, args, buffers ? asBuffers : asStrings)) as Promise<unknown>
  }
  /**
   * `args`: `[script.sha, keyCount, ...keys, ...argv]`, built by the caller in one array; `onReply`
   * maps the reply (one promise per call: the `NOSCRIPT` fallback is the rejection handler).
   */
  const evalScript = <A>(lua: Script, args: Array<Arg>, buffers: boolean, onReply: (reply: unknown) => A): Promise<A> =>
    send("evalsha", args, buffers).then(onReply, (error) => {
      if (!isNoScript(error)) throw error
      // `Command` copies its arguments: the array is the caller's and free to reuse
      args[0] = lua.lua
      return send("eval", args, buffers).then(onReply)
    })
  return { send, evalScript }
}

/** The commands sent over one client (see `sender`). @internal */
export type Sender = ReturnType<typeof sender>
