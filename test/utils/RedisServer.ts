/**
 * A scoped `redis-server` process on a free port, for tests. No Docker, no mocks: the binary must
 * be on PATH. The process is killed when the scope closes, even when a test paused it.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as ChildProcess from "node:child_process"
import * as Net from "node:net"

export class RedisServerError extends Data.TaggedError("RedisServerError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

const notFoundMessage =
  "redis-server not found on PATH. Install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) — the tests start their own redis-server processes."

export interface RedisServerService {
  readonly host: string
  readonly port: number
  /** `redis://host:port` */
  readonly url: string
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
}

/** Finds a free TCP port by listening on port 0 and closing. */
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

const encode = (args: ReadonlyArray<string>): string =>
  `*${args.length}\r\n` + args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join("")

/** One command over a raw socket; resolves with the reply's first line. */
export const rawCommand = (
  host: string,
  port: number,
  args: ReadonlyArray<string>,
  timeoutMillis = 1000
): Effect.Effect<string, RedisServerError> =>
  Effect.async<string, RedisServerError>((resume) => {
    let reply = ""
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
      reply += chunk.toString("utf8")
      const end = reply.indexOf("\r\n")
      if (end >= 0) finish(Effect.succeed(reply.slice(0, end)))
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

interface Running {
  readonly child: ChildProcess.ChildProcess
  readonly exited: Promise<void>
  readonly output: Array<string>
}

const spawnServer = (host: string, port: number): Effect.Effect<Running, RedisServerError> =>
  Effect.async<Running, RedisServerError>((resume) => {
    const output: Array<string> = []
    const child = ChildProcess.spawn(
      "redis-server",
      [
        "--port",
        String(port),
        "--bind",
        host,
        "--save",
        "",
        "--appendonly",
        "no",
        "--loglevel",
        "warning",
        // DEBUG SLEEP freezes the server in fault tests (Redis 7 refuses DEBUG unless enabled)
        "--enable-debug-command",
        "local"
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

const waitUntilReady = (host: string, port: number, running: Running): Effect.Effect<void, RedisServerError> =>
  Effect.suspend(() =>
    isAlive(running)
      ? rawCommand(host, port, ["PING"], 500).pipe(
        Effect.filterOrFail(
          (reply) => reply === "+PONG",
          (reply) => new RedisServerError({ message: `unexpected PING reply ${reply}` })
        ),
        Effect.asVoid
      )
      : Effect.fail(
        new RedisServerError({ message: `redis-server exited on start:\n${running.output.join("")}` })
      )
  ).pipe(
    // Real time: the fixture may be built under a TestClock.
    Effect.retry({ schedule: Schedule.spaced("20 millis"), times: 250 }),
    Effect.withClock(Clock.make()),
    Effect.mapError((error) =>
      new RedisServerError({
        message: `redis-server on ${host}:${port} did not start: ${error.message}\n${running.output.join("")}`,
        cause: error
      })
    )
  )

const start: Effect.Effect<{ service: RedisServerService; current: () => Running }, RedisServerError> = Effect.gen(
  function*() {
    const host = "127.0.0.1"
    const port = yield* freePort
    let running = yield* spawnServer(host, port)
    yield* waitUntilReady(host, port, running).pipe(Effect.tapError(() => stopServer(running)))
    const service: RedisServerService = {
      host,
      port,
      url: `redis://${host}:${port}`,
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
        running = yield* spawnServer(host, port)
        const started = running
        yield* waitUntilReady(host, port, started).pipe(Effect.tapError(() => stopServer(started)))
      }),
      command: (...args) => rawCommand(host, port, args)
    }
    return { service, current: () => running }
  }
)

export class RedisServer extends Context.Tag("test/RedisServer")<RedisServer, RedisServerService>() {
  /** Starts a server for the scope's lifetime. */
  static readonly make: Effect.Effect<RedisServerService, RedisServerError, Scope.Scope> = Effect.acquireRelease(
    start,
    ({ current }) => stopServer(current())
  ).pipe(Effect.map(({ service }) => service))

  static readonly layer: Layer.Layer<RedisServer, RedisServerError> = Layer.scoped(this, this.make)
}
