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
 * The client's `commandTimeout` is enforced here, not by ioredis' timer per command: ioredis arms
 * a `setTimeout` per command, and after a stall (a CPU-bound handler, a long GC pause, decoding a
 * big batch) Node runs due timers *before* it reads the sockets, so a reply that has arrived but
 * not been read times out (5,000 lease writes answered by Redis in 18 ms gave 3,584 "timeouts").
 * A command of this sender has a deadline in its connection's queue, checked by one timer; when a
 * deadline passes, the decision waits for a `setImmediate` (which runs after the loop's next poll
 * for I/O), so only a command still unanswered after its socket was read times out, with the same
 * `Error("Command timed out")` ioredis gives. A hung Redis still fails commands within about the
 * timeout.
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

const settled = Promise.resolve()

/**
 * Runs `task` in a microtask, as a reaction on a settled promise: `queueMicrotask` makes an
 * `AsyncResource` and a bound function per call (a hit here asks for two). Same queue, same order;
 * a throw in `task` would be an unhandled rejection instead of an uncaught exception (the tasks
 * given here do not throw: they catch what they call).
 *
 * @internal
 */
export const microtask = (task: () => void): void => {
  void settled.then(task)
}

/** A script's `1` reply (written, deleted) as `true`. @internal */
export const isOne = (reply: unknown): boolean => reply === 1

const isNoScript = (error: unknown): boolean => error instanceof Error && error.message.startsWith("NOSCRIPT")

/** The message ioredis rejects a timed-out command with (`RedisClient` maps it to a timeout). @internal */
export const commandTimedOut = "Command timed out"

/**
 * A command whose `commandTimeout` is a deadline in its sender's queue instead of ioredis' timer:
 * ioredis calls `setTimeout(ms)` from `sendCommand` when the client has a `commandTimeout`.
 * `settled` is set when ioredis settles it (`_clearTimers` runs on every resolve and reject; should
 * a later ioredis not call it, a settled command is still found by `isResolved` or its rejection
 * is a no-op).
 */
class QueuedCommand extends Command {
  /** When the command times out (`performance.now()`); `-1`: no deadline. */
  deadline = -1
  settled = false
  constructor(
    readonly queue: DeadlineQueue,
    name: string,
    args: Array<Arg>,
    options: CommandOptions
  ) {
    super(name, args, options)
  }
  override setTimeout(ms: number): void {
    if (this.deadline < 0) this.queue.add(this, ms)
  }
  /**
   * The command in RESP, the bytes ioredis' own `toWritable` makes, written into one buffer: its
   * string concatenations (about six strings per argument) were about 1 KiB of the 11.6 KiB a Redis
   * hit allocated (`bench/src/cost.ts redis hit`: 11.6 → 10.6 KiB).
   *
   * A command already settled is written as `PING`: that is a resend (ioredis writes a connection's
   * unanswered commands again on the next connection) of a command its caller gave up on (timed
   * out). Run late, it would write a lease or a value that nobody owns any more, and nobody would
   * release it; the `PING` keeps the replies in step with ioredis' queue (its answer goes nowhere).
   */
  override toWritable(socket: object): string | Buffer {
    if (this.settled) return ping
    return resp(this.name, this.args) ?? super.toWritable(socket)
  }
}

/** What a resent command given up on is written as (see `QueuedCommand.toWritable`). */
const ping = Buffer.from("*1\r\n$4\r\nPING\r\n")

const CR = 13
const LF = 10

/** Writes `n` (a non-negative integer) in decimal at `offset`; the offset after it. */
const writeDecimal = (buffer: Buffer, offset: number, n: number): number => {
  let end = offset + decimalLength(n)
  const after = end
  do {
    buffer[--end] = 48 + (n % 10)
    n = Math.floor(n / 10)
  } while (n > 0)
  return after
}

const decimalLength = (n: number): number => {
  let digits = 1
  while (n >= 10) {
    n = Math.floor(n / 10)
    digits++
  }
  return digits
}

/** `*count\r\n` or `$length\r\n` at `offset`; the offset after it. */
const writeHeader = (buffer: Buffer, offset: number, mark: number, n: number): number => {
  buffer[offset] = mark
  offset = writeDecimal(buffer, offset + 1, n)
  buffer[offset] = CR
  buffer[offset + 1] = LF
  return offset + 2
}

/**
 * `name` and `args` (strings and buffers, as `Command` leaves them) as one RESP array of bulk
 * strings; `undefined` for any other argument (left to ioredis).
 */
const resp = (name: string, args: ReadonlyArray<unknown>): Buffer | undefined => {
  const lengths = new Array<number>(args.length)
  const nameLength = Buffer.byteLength(name)
  let size = 1 + decimalLength(args.length + 1) + 2 + 1 + decimalLength(nameLength) + 2 + nameLength + 2
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]
    let length: number
    if (typeof arg === "string") length = Buffer.byteLength(arg)
    else if (Buffer.isBuffer(arg)) length = arg.length
    else return undefined
    lengths[i] = length
    size += 1 + decimalLength(length) + 2 + length + 2
  }
  const buffer = Buffer.allocUnsafe(size)
  let offset = writeHeader(buffer, 0, 42, args.length + 1)
  offset = writeHeader(buffer, offset, 36, nameLength)
  offset += buffer.write(name, offset)
  for (let i = 0; i < args.length; i++) {
    buffer[offset] = CR
    buffer[offset + 1] = LF
    offset = writeHeader(buffer, offset + 2, 36, lengths[i]!)
    const arg = args[i]
    offset += typeof arg === "string" ? buffer.write(arg, offset) : (arg as Buffer).copy(buffer, offset)
  }
  buffer[offset] = CR
  buffer[offset + 1] = LF
  return buffer
}

// ioredis settles every command through its (private) `_clearTimers`: extended once here, on the
// subclass's prototype, to note the settlement and let the queue drop it
const clearTimers = (Command.prototype as unknown as { _clearTimers?: (this: Command) => void })._clearTimers
Object.defineProperty(QueuedCommand.prototype, "_clearTimers", {
  value(this: QueuedCommand) {
    this.settled = true
    clearTimers?.call(this)
    this.queue.settled()
  }
})

/**
 * The deadlines of one connection's commands, in the order they were sent (a connection answers in
 * that order, so settled commands leave from the head), checked by one timer for the head.
 *
 * When the timer fires it notes the connection's state (bytes read, bytes waiting in the socket's
 * write buffer) and waits for a `setImmediate`: the loop has then been through a poll for I/O and
 * read what had arrived. The commands past their deadline (at the fire) and still unanswered then
 * time out, unless the connection moved meanwhile: bytes were read (the oldest unanswered reply may
 * be under way: a big reply takes more than one poll) or bytes of ours left the write buffer (a
 * burst of commands the process wrote faster than the socket took them: they were not even sent
 * when their timer started). Then they are looked at again one timeout later, and time out if the
 * connection did not move since. A hung Redis sends nothing: its commands fail one poll after the
 * timeout, or one timeout later when the kernel was still taking a backlog of our writes.
 *
 * @internal
 */
export class DeadlineQueue {
  private readonly commands: Array<QueuedCommand | undefined> = []
  private head = 0
  private timer: ReturnType<typeof setTimeout> | undefined
  private immediate: ReturnType<typeof setImmediate> | undefined
  /** When the timer fired (the cutoff of the check after the next poll). */
  private firedAt = 0
  /** The connection's state when last looked at (`bytesRead`, bytes in the write buffer). */
  private bytesSeen = 0
  private pendingSeen = 0
  /** The state to compare with is the last check's (a second look after the connection moved). */
  private again = false
  /** The last timeout asked for (one per client). */
  private ms = 0

  constructor(
    private readonly bytesRead: () => number,
    private readonly bytesPending: () => number
  ) {}

  /** Commands waiting for an answer (tests). */
  get size(): number {
    return this.commands.length - this.head
  }

  add(command: QueuedCommand, ms: number): void {
    const last = this.commands.length > this.head ? this.commands[this.commands.length - 1] : undefined
    this.ms = ms
    // one timeout per client: deadlines stay in order even should the option change meanwhile
    command.deadline = Math.max(performance.now() + ms, last?.deadline ?? 0)
    this.commands.push(command)
    if (this.timer === undefined && this.immediate === undefined) this.arm()
  }

  /** A command settled: drop the settled ones at the head (they release their replies at once). */
  settled(): void {
    const commands = this.commands
    while (this.head < commands.length && (commands[this.head]!.settled || commands[this.head]!.isResolved)) {
      commands[this.head++] = undefined
    }
    if (this.head === commands.length) {
      commands.length = 0
      this.head = 0
    } else if (this.head > 1024 && this.head * 2 > commands.length) {
      commands.splice(0, this.head)
      this.head = 0
    }
  }

  private arm(): void {
    const first = this.commands[this.head]
    if (first === undefined) return
    this.schedule(first.deadline - performance.now())
  }

  private schedule(millis: number): void {
    this.timer = setTimeout(this.fire, Math.max(1, Math.ceil(millis)))
    // the socket keeps the process alive while a command waits, not this timer
    this.timer.unref()
  }

  private readonly fire = (): void => {
    this.timer = undefined
    this.firedAt = performance.now()
    if (!this.again) {
      this.bytesSeen = this.bytesRead()
      this.pendingSeen = this.bytesPending()
    }
    this.again = false
    this.immediate = setImmediate(this.check)
  }

  private readonly check = (): void => {
    this.immediate = undefined
    this.settled()
    const commands = this.commands
    const expired: Array<QueuedCommand> = []
    for (let i = this.head; i < commands.length; i++) {
      const command = commands[i]!
      if (command.deadline > this.firedAt) break
      if (!command.settled && !command.isResolved) expired.push(command)
    }
    if (expired.length === 0) return this.arm()
    const bytes = this.bytesRead()
    const pending = this.bytesPending()
    if (bytes !== this.bytesSeen || pending < this.pendingSeen) {
      // the connection moved: replies are being read, or our writes are still leaving
      this.bytesSeen = bytes
      this.pendingSeen = pending
      this.again = true
      return this.schedule(this.ms)
    }
    for (const command of expired) {
      command.settled = true
      command.reject(new Error(commandTimedOut))
    }
    this.settled()
    this.arm()
  }
}

/**
 * A sender over one client: `send(name, args, buffers)` and `evalScript(script, args, buffers)`.
 * Keys get the client's `keyPrefix` from ioredis' `Command`, as with its own methods.
 *
 * @internal
 */
export const sender = (client: Redis) => {
  const keyPrefix = client.options.keyPrefix
  const stream = () => client.stream as Socket | undefined
  const queue = new DeadlineQueue(() => stream()?.bytesRead ?? 0, () => stream()?.writableLength ?? 0)
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
      microtask(endTurn)
    } else if (corked === undefined && client.status === "ready") {
      const stream = client.stream as Socket | undefined
      if (stream !== undefined && stream.writable) {
        stream.cork()
        corked = stream
      }
    }
    // `sendCommand` returns the command's promise (typed `unknown` by ioredis)
    return client.sendCommand(new QueuedCommand(queue, name, args, buffers ? asBuffers : asStrings)) as Promise<
      unknown
    >
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
  return { send, evalScript, queue }
}

/** The commands sent over one client (see `sender`). @internal */
export type Sender = ReturnType<typeof sender>
