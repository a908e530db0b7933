/**
 * The benchmarks' Redis: a throwaway `redis-server` on a free port (`--save "" --appendonly no`,
 * bound to 127.0.0.1), or the one `REDIS_URL` names where the caller allows it.
 *
 * A spawned server is killed when the process exits, and on SIGINT/SIGTERM (the process then exits
 * with code 130). It can be killed (SIGKILL), paused (SIGSTOP) and resumed (SIGCONT) to simulate an
 * outage.
 */
import { Redis } from "ioredis"
import * as ChildProcess from "node:child_process"
import * as Net from "node:net"

/** A free TCP port on 127.0.0.1 (free when asked: another process may take it before it is used). */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = Net.createServer()
    server.unref()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

export interface RedisServer {
  readonly url: string
  readonly host: string
  readonly port: number
  /** `false` when the server is the one `REDIS_URL` names: then `kill`, `pause` and `resume` throw. */
  readonly spawned: boolean
  /** The redis-server's pid, `undefined` when it was not spawned or has exited. */
  readonly pid: () => number | undefined
  /** SIGKILL (after SIGCONT, should it be paused); resolves once it has exited. */
  readonly kill: () => Promise<void>
  /** SIGSTOP: the port stays open, nothing answers. */
  readonly pause: () => void
  /** SIGCONT. */
  readonly resume: () => void
  /** Kills a spawned server (as `kill`, and a no-op once it has exited); does nothing to a `REDIS_URL` one. */
  readonly stop: () => Promise<void>
}

export interface StartOptions {
  /** Use `REDIS_URL`, when it is set and not empty, instead of spawning a redis-server (default false). */
  readonly allowEnv?: boolean
}

const running = (child: ChildProcess.ChildProcess): boolean => child.exitCode === null && child.signalCode === null

const forceKill = (child: ChildProcess.ChildProcess): void => {
  if (!running(child)) return
  child.kill("SIGCONT") // a stopped process dies of SIGKILL too, but only gets reaped once it runs again
  child.kill("SIGKILL")
}

/** The spawned servers still running: killed on exit, SIGINT and SIGTERM. */
const live = new Set<ChildProcess.ChildProcess>()
let cleanupInstalled = false

const installCleanup = (): void => {
  if (cleanupInstalled) return
  cleanupInstalled = true
  const killAll = () => {
    for (const child of live) forceKill(child)
  }
  process.once("exit", killAll)
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      killAll()
      process.exit(130)
    })
  }
}

const fromUrl = (url: string): RedisServer => {
  const parsed = new URL(url)
  const notSpawned = (what: string) => () => {
    throw new Error(`cannot ${what} the Redis at REDIS_URL: it was not spawned by this benchmark`)
  }
  return {
    url,
    host: parsed.hostname,
    port: parsed.port === "" ? 6379 : Number(parsed.port),
    spawned: false,
    pid: () => undefined,
    kill: async () => notSpawned("kill")(),
    pause: notSpawned("pause"),
    resume: notSpawned("resume"),
    stop: async () => {}
  }
}

/** Waits until the server at `url` answers PING, for up to 5 s or until `alive()` turns false. */
const waitUntilReady = async (url: string, alive: () => boolean): Promise<void> => {
  const deadline = Date.now() + 5000
  for (;;) {
    const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
    probe.on("error", () => {})
    try {
      await probe.connect()
      await probe.ping()
      probe.disconnect()
      return
    } catch (error) {
      probe.disconnect()
      if (Date.now() > deadline || !alive()) throw error
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
}

/**
 * Spawns a redis-server on a free port and waits until it answers; with `allowEnv`, returns the
 * Redis `REDIS_URL` names instead (when set), without checking it.
 */
export const startRedis = async (options: StartOptions = {}): Promise<RedisServer> => {
  const allowEnv = options.allowEnv ?? false
  const fromEnv = process.env["REDIS_URL"]
  if (allowEnv && fromEnv !== undefined && fromEnv !== "") return fromUrl(fromEnv)

  const host = "127.0.0.1"
  const port = await freePort()
  const child = ChildProcess.spawn(
    "redis-server",
    ["--port", String(port), "--bind", host, "--save", "", "--appendonly", "no", "--loglevel", "warning"],
    { stdio: ["ignore", "pipe", "pipe"] }
  )
  // the tail of its output, for the error should it not start
  const output: Array<string> = []
  const keep = (chunk: Buffer) => {
    output.push(chunk.toString("utf8"))
    if (output.length > 50) output.shift()
  }
  child.stdout.on("data", keep)
  child.stderr.on("data", keep)
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  await new Promise<void>((resolve, reject) => {
    child.once("spawn", resolve)
    child.once("error", (error: NodeJS.ErrnoException) =>
      reject(
        error.code === "ENOENT"
          ? new Error(`redis-server not found on PATH${allowEnv ? ": install it, or set REDIS_URL" : ""}`)
          : error
      ))
  })
  live.add(child)
  void exited.then(() => live.delete(child))
  installCleanup()

  const url = `redis://${host}:${port}`
  try {
    await waitUntilReady(url, () => running(child))
  } catch (error) {
    forceKill(child)
    throw new Error(`redis-server did not start on port ${port}: ${String(error)}\n${output.join("")}`)
  }

  const kill = async () => {
    forceKill(child)
    await exited
  }
  return {
    url,
    host,
    port,
    spawned: true,
    pid: () => running(child) ? child.pid : undefined,
    kill,
    pause: () => {
      if (running(child)) child.kill("SIGSTOP")
    },
    resume: () => {
      if (running(child)) child.kill("SIGCONT")
    },
    stop: kill
  }
}

/** The `redis_version` of the server at `url` (`"unknown"` when INFO does not name it). */
export const redisVersion = async (url: string): Promise<string> => {
  const client = new Redis(url)
  try {
    const info = await client.info("server")
    await client.quit()
    return /redis_version:(\S+)/.exec(info)?.[1] ?? "unknown"
  } catch (error) {
    client.disconnect()
    throw error
  }
}
