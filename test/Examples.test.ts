/**
 * The examples a new user runs first (`examples/src`), run as they would run them, on the embedded
 * memory store and on a real redis-server: what they print stays true (one database query for a
 * burst of 1,000 concurrent gets, the write seen after its invalidation, a not-found).
 */
import { assert, describe, it } from "@effect/vitest"
import { Data, Effect } from "effect"
import * as ChildProcess from "node:child_process"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { RedisServer } from "./utils/RedisServer.js"

const examples = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "..", "examples")

class ExampleFailed extends Data.TaggedError("ExampleFailed")<{ readonly message: string }> {}

/**
 * Runs `examples/src/<script>` with `tsx`, from the examples package (as its npm script does), on
 * the Redis at `redisUrl` or, without one, on the embedded memory store; its output.
 */
const run = (script: string, redisUrl?: string) =>
  Effect.async<string, ExampleFailed>((resume) => {
    const env = { ...process.env }
    delete env["REDIS_URL"]
    if (redisUrl !== undefined) env["REDIS_URL"] = redisUrl
    const child = ChildProcess.execFile(
      process.execPath,
      ["--import", "tsx", Path.join("src", script)],
      { cwd: examples, env, timeout: 60_000 },
      (error, stdout, stderr) =>
        resume(
          error === null
            ? Effect.succeed(stdout)
            : Effect.fail(new ExampleFailed({ message: `${script}: ${error.message}\n${stdout}\n${stderr}` }))
        )
    )
    return Effect.sync(() => child.kill("SIGKILL"))
  })

/** What `promise-caller.ts` prints after its store line, wherever it runs. */
const promiseCallerSays = [
  "GET /users/42 -> 200 Ada Lovelace (a miss: 1 query)",
  "GET /users/42 -> 200 Ada Lovelace (a hit: 1 query in all)",
  "1,000 concurrent GET /users/7 -> 1 distinct answer, 1 query for them",
  "GET /users/42 -> 200 Ada King (after the write and invalidate)",
  "GET /users/404 -> 404 not found",
  "database queries in all: 4"
]

describe("examples", () => {
  it.live(
    "promise-caller on the memory store: one query per key, one for a burst, the write seen",
    () =>
      Effect.gen(function*() {
        const out = yield* run("promise-caller.ts")
        assert.include(out, "store: in-memory")
        for (const line of promiseCallerSays) assert.include(out, line)
      }),
    90_000
  )

  it.scopedLive("promise-caller on Redis (REDIS_URL): the same answers and counts", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const out = yield* run("promise-caller.ts", server.url)
      assert.include(out, "store: Redis from REDIS_URL")
      assert.notInclude(out, server.url, "the URL is not printed")
      for (const line of promiseCallerSays) assert.include(out, line)
    }), 90_000)

  it.live(
    "the main demo (get-user, the README's quick start) on the memory store: one query for a stampede",
    () =>
      Effect.gen(function*() {
        const out = yield* run("get-user.ts")
        assert.include(out, "store: in-memory")
        assert.match(out, /4\. stampede {4}1,000 concurrent get\(7\) on a cold key -> 1000 answers, 1 database query/)
        assert.include(out, "Ada King")
      }),
    90_000
  )
})
