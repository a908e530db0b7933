/**
 * A scoped `redis-server` process for tests. No Docker, no mocks: the binary must be on PATH. The
 * process is killed when the scope closes, even when a test paused it.
 *
 * Ports cannot be raced for. Each server takes a port below the kernel's ephemeral range (so no
 * client socket and no `listen(0)` can be handed it) and reserves it with a lock file in the
 * machine's temp directory, shared by every test process on the machine, for the whole scope: a
 * `restart` after a `kill` binds the same port again, and no other fixture picks it meanwhile. A
 * port held by something outside the fixtures ("Address already in use") is skipped for another
 * (on start) or waited for (on restart). Readiness is checked against the process id the server
 * reports, so a test never talks to a stranger's server on its port.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"

export class RedisServerError extends Data.TaggedError("RedisServerError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

const notFoundMessage =
  "redis-server not found on PATH. Install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) — the tests start their own redis-server processes."

/** How long a server may take to answer its first PING on a loaded machine: a bound against a hang. */
const startBound = Duration.seconds(10)
/** How long a restart waits for its reserved port to be free again (an outsider holding it). */
const rebindBound = Duration.seconds(10)

export interface RedisServerService {
  readonly host: string
  readonly port: number
  /** `redis://host:port` */
  readonly url: string
  /** The server's working directory (RDB files), removed with the scope. */
  readonly dir: string
  /** The current process id (changes on `restart`). */
  readonly pid: Effect.Effect<number>
  /** SIGKILL, and wait for the exit. Nothing listens on the port afterwards. */
  readonly kill: Effect.Effect<void>
  /** SIGSTOP: connections stay open, nothing answers. */
  readonly pause: Effect.Effect<void>
  /** SIGCONT. */
  readonly resume: Effect.Effect<void>
  /** Kills the process (if alive) and starts a fresh, empty one on the same port. */
  readonly restart: Effect.Effect<void, RedisServerError>
  /** Sends one command on a fresh raw connection and returns the raw RESP reply (first line). */
  readonly command: (...args: ReadonlyArray<string>) => Effect.Effect<string, RedisServerError>
  /** `INFO section` as a map of its fields, over a fresh raw connection. */
  readonly info: (section: string) => Effect.Effect<ReadonlyMap<string, string>, RedisServerError>
  /**
   * How many times each command ran so far (`INFO commandstats`), by lower-case name, e.g. `mget`.
   * Counting commands needs no client library and sees every connection's calls.
   */
  readonly commandCalls: Effect.Effect<ReadonlyMap<string, number>, RedisServerError>
}

export interface Options {
  /** Extra `redis-server` arguments, e.g. `["--key-load-delay", "100"]`. */
  readonly args?: ReadonlyArray<string> | undefined
}

/** Finds a TCP port where nothing listens (the kernel's choice; for "nothing listens here" tests). */
export const freePort: Effect.Effect<number, RedisServerError> = Effect.async<number, RedisServerError>((resume) => {
  const server = Net.createServer()
  server.unref()
  server.on("error", (cause) => resume(Effect.fail(new RedisServerError({ message: "no free port", cause }))))
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

// -------------------------------------------------------------------------------------------------
// raw RESP over a socket

const encode = (args: ReadonlyArray<string>): string =>
  `*${args.length}\r\n` + args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join("")

/**
 * One command over a raw socket; resolves with the reply's first line, or with the whole payload
 * of a bulk string reply when `bulk` is set.
 */
const exchange = (
  host: string,
  port: number,
  args: ReadonlyArray<string>,
  timeoutMillis: number,
  bulk: boolean
): Effect.Effect<string, RedisServerError> =>
  Effect.async<string, RedisServerError>((resume) => {
    let reply = Buffer.alloc(0)
    const socket = Net.createConnection({ host, port })
    const finish = (effect: Effect.Effect<string, RedisServerError>) => {
      clearTimeout(timer)
      socket.destroy()
      resume(effect)
    }
    const timer = setTimeout(
      () =>
        finish(Effect.fail(new RedisServerError({ message: `no reply from ${host}:${port} in ${timeoutMillis}ms` }))),
      timeoutMillis
    )
    socket.on("connect", () => socket.write(encode(args)))
    socket.on("data", (chunk) => {
      reply = Buffer.concat([reply, chunk])
      const end = reply.indexOf("\r\n")
      if (end < 0) return
      const first = reply.subarray(0, end).toString("utf8")
      if (!bulk || !first.startsWith("$")) return finish(Effect.succeed(first))
      const length = Number(first.slice(1))
      if (length < 0) return finish(Effect.succeed(""))
      if (reply.length >= end + 2 + length) {
        finish(Effect.succeed(reply.subarray(end + 2, end + 2 + length).toString("utf8")))
      }
    })
    socket.on(
      "error",
      (cause) => finish(Effect.fail(new RedisServerError({ message: `cannot reach ${host}:${port}`, cause })))
    )
    return Effect.sync(() => {
      clearTimeout(timer)
      socket.destroy()
    })
  })

/** One command over a raw socket; resolves with the reply's first line. */
export const rawCommand = (
  host: string,
  port: number,
  args: ReadonlyArray<string>,
  timeoutMillis = 1000
): Effect.Effect<string, RedisServerError> => exchange(host, port, args, timeoutMillis, false)

const parseInfo = (text: string): ReadonlyMap<string, string> => {
  const fields = new Map<string, string>()
  for (const line of text.split("\r\n")) {
    const colon = line.indexOf(":")
    if (colon > 0 && !line.startsWith("#")) fields.set(line.slice(0, colon), line.slice(colon + 1))
  }
  return fields
}

/** `INFO section` over a raw socket. */
export const rawInfo = (
  host: string,
  port: number,
  section: string,
  timeoutMillis = 1000
): Effect.Effect<ReadonlyMap<string, string>, RedisServerError> =>
  Effect.map(exchange(host, port, ["INFO", section], timeoutMillis, true), parseInfo)

// -------------------------------------------------------------------------------------------------
// port reservations shared by every test process on the machine

/** Below Linux's default ephemeral range (32768–60999): the kernel never hands these out by itself. */
const portRange = { from: 20_000, size: 10_000 } as const
const lockDir = Path.join(Os.tmpdir(), "cache-aside-test-ports")

const processAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (cause) {
    return (cause as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** Takes the lock file of `port` for this process; a lock left by a dead process is taken over. */
const tryLock = (port: number): boolean => {
  const file = Path.join(lockDir, `${port}.lock`)
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      Fs.writeFileSync(file, String(process.pid), { flag: "wx" })
      return true
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code !== "EEXIST") return false
      const owner = Number(Fs.readFileSync(file, { encoding: "utf8", flag: "r" }) || "0")
      if (owner > 0 && processAlive(owner)) return false
      Fs.rmSync(file, { force: true }) // left by a test process that died: take it over
    }
  }
  return false
}

const unlock = (port: number) => Fs.rmSync(Path.join(lockDir, `${port}.lock`), { force: true })

/** Reserves a port for the scope: locked against every other fixture on the machine. */
const reservePort = (skip: ReadonlySet<number>): Effect.Effect<number, RedisServerError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.try({
      try: () => {
        Fs.mkdirSync(lockDir, { recursive: true })
        for (let attempt = 0; attempt < 200; attempt++) {
          const port = portRange.from + Math.floor(Math.random() * portRange.size)
          if (!skip.has(port) && tryLock(port)) return port
        }
        throw new Error("every port tried is reserved")
      },
      catch: (cause) => new RedisServerError({ message: "cannot reserve a port", cause })
    }),
    (port) => Effect.sync(() => unlock(port))
  )

// -------------------------------------------------------------------------------------------------
// the process

interface Running {
  readonly child: ChildProcess.ChildProcess
  readonly exited: Promise<void>
  readonly output: Array<string>
}

const spawnServer = (
  host: string,
  port: number,
  dir: string,
  extra: ReadonlyArray<string>
): Effect.Effect<Running, RedisServerError> =>
  Effect.async<Running, RedisServerError>((resume) => {
    const output: Array<string> = []
    const child = ChildProcess.spawn(
      "redis-server",
      [
        "--port",
        String(port),
        "--bind",
        host,
        "--dir",
        dir,
        "--save",
        "",
        "--appendonly",
        "no",
        "--loglevel",
        "warning",
        // DEBUG SLEEP freezes the server in fault tests (Redis 7 refuses DEBUG unless enabled)
        "--enable-debug-command",
        "local",
        ...extra
      ],
      { stdio: ["ignore", "pipe", "pipe"] }
    )
    const keep = (chunk: Buffer) => {
      output.push(chunk.toString("utf8"))
      if (output.length > 50) output.shift()
    }
    // Always drain the pipes, or a chatty server would block on a full pipe.
    child.stdout?.on("data", keep)
    child.stderr?.on("data", keep)
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
    child.once("error", (cause: NodeJS.ErrnoException) =>
      resume(Effect.fail(
        cause.code === "ENOENT"
          ? new RedisServerError({ message: notFoundMessage, cause })
          : new RedisServerError({ message: `cannot start redis-server: ${cause.message}`, cause })
      )))
    child.once("spawn", () => resume(Effect.succeed({ child, exited, output })))
  })

const isAlive = (running: Running): boolean => running.child.exitCode === null && running.child.signalCode === null

const stopServer = (running: Running): Effect.Effect<void> =>
  Effect.promise(() => {
    if (!isAlive(running)) return Promise.resolve()
    running.child.kill("SIGCONT")
    running.child.kill("SIGKILL")
    return running.exited
  })

/** The port was taken by something else: the server exited without listening. */
class PortInUse extends Data.TaggedError("PortInUse")<{ readonly port: number }> {}

/** Still starting: no answer yet, or an answer from a process that is not ours. */
class NotReady extends Data.TaggedError("NotReady")<{ readonly message: string }> {}

/**
 * Waits until our process answers on the port: `INFO server` reports our process id. An exit
 * with "Address already in use" is `PortInUse`; any other exit fails with the server's output.
 */
const waitUntilReady = (
  host: string,
  port: number,
  running: Running
): Effect.Effect<void, RedisServerError | PortInUse> =>
  Effect.suspend((): Effect.Effect<void, RedisServerError | PortInUse | NotReady> => {
    if (!isAlive(running)) {
      const output = running.output.join("")
      return output.includes("Address already in use")
        ? Effect.fail(new PortInUse({ port }))
        : Effect.fail(new RedisServerError({ message: `redis-server exited on start:\n${output}` }))
    }
    return rawInfo(host, port, "server", 500).pipe(
      Effect.mapError((error) => new NotReady({ message: error.message })),
      Effect.flatMap((info) =>
        info.get("process_id") === String(running.child.pid)
          ? Effect.void
          : Effect.fail(new NotReady({ message: `port ${port} answered as process ${info.get("process_id")}` }))
      )
    )
  }).pipe(
    // Real time: the fixture may be built under a TestClock.
    Effect.retry({ schedule: Schedule.spaced("20 millis"), while: (error) => error._tag === "NotReady" }),
    Effect.timeoutFail({
      duration: startBound,
      onTimeout: () => new NotReady({ message: `no answer within ${Duration.format(startBound)}` })
    }),
    Effect.withClock(Clock.make()),
    Effect.catchTag(
      "NotReady",
      (error) =>
        Effect.fail(
          new RedisServerError({
            message: `redis-server on ${host}:${port} did not start: ${error.message}\n${running.output.join("")}`
          })
        )
    )
  )

/** Spawns on `port` and waits until it answers; on any failure the process is stopped. */
const launch = (host: string, port: number, dir: string, extra: ReadonlyArray<string>) =>
  Effect.flatMap(
    spawnServer(host, port, dir, extra),
    (running) =>
      Effect.as(waitUntilReady(host, port, running).pipe(Effect.tapError(() => stopServer(running))), running)
  )

/** Takes a reserved port and starts on it; a port held by an outsider is skipped for another. */
const startOnReservedPort = (
  host: string,
  dir: string,
  extra: ReadonlyArray<string>
): Effect.Effect<{ readonly port: number; readonly running: Running }, RedisServerError, Scope.Scope> =>
  Effect.gen(function*() {
    const skip = new Set<number>()
    for (let attempt = 0; attempt < 20; attempt++) {
      const port = yield* reservePort(skip)
      const started = yield* Effect.either(launch(host, port, dir, extra))
      if (started._tag === "Right") return { port, running: started.right }
      if (started.left._tag !== "PortInUse") return yield* started.left
      skip.add(port)
    }
    return yield* new RedisServerError({ message: "every reserved port was in use by another program" })
  })

const start = (options: Options): Effect.Effect<RedisServerService, RedisServerError, Scope.Scope> =>
  Effect.gen(function*() {
    const host = "127.0.0.1"
    const extra = options.args ?? []
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "cache-aside-redis-"))),
      (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
    )
    const first = yield* startOnReservedPort(host, dir, extra)
    const port = first.port
    let running = first.running
    yield* Effect.addFinalizer(() => stopServer(running))
    const service: RedisServerService = {
      host,
      port,
      url: `redis://${host}:${port}`,
      dir,
      pid: Effect.sync(() => running.child.pid ?? -1),
      kill: Effect.suspend(() => stopServer(running)),
      pause: Effect.sync(() => {
        running.child.kill("SIGSTOP")
      }),
      resume: Effect.sync(() => {
        running.child.kill("SIGCONT")
      }),
      restart: Effect.gen(function*() {
        yield* stopServer(running)
        // the port stays reserved for us; an outsider that grabbed it meanwhile is waited out
        running = yield* launch(host, port, dir, extra).pipe(
          Effect.retry({ schedule: Schedule.spaced("50 millis"), while: (error) => error._tag === "PortInUse" }),
          Effect.timeoutFail({
            duration: rebindBound,
            onTimeout: () =>
              new RedisServerError({ message: `port ${port} not free again in ${Duration.format(rebindBound)}` })
          }),
          Effect.withClock(Clock.make()),
          Effect.catchTag(
            "PortInUse",
            () => Effect.fail(new RedisServerError({ message: `port ${port} stays in use` }))
          )
        )
      }),
      command: (...args) => rawCommand(host, port, args),
      info: (section) => rawInfo(host, port, section),
      commandCalls: Effect.map(rawInfo(host, port, "commandstats"), (info) => {
        const calls = new Map<string, number>()
        for (const [field, value] of info) {
          const match = /^calls=(\d+)/.exec(value)
          if (field.startsWith("cmdstat_") && match !== null) calls.set(field.slice(8), Number(match[1]))
        }
        return calls
      })
    }
    return service
  })

export class RedisServer extends Context.Tag("test/RedisServer")<RedisServer, RedisServerService>() {
  /** Starts a server for the scope's lifetime. */
  static readonly make: Effect.Effect<RedisServerService, RedisServerError, Scope.Scope> = start({})

  /** Starts a server with extra `redis-server` arguments for the scope's lifetime. */
  static readonly makeWith = (options: Options): Effect.Effect<RedisServerService, RedisServerError, Scope.Scope> =>
    start(options)

  static readonly layer: Layer.Layer<RedisServer, RedisServerError> = Layer.scoped(this, this.make)
}
