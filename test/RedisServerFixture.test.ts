/**
 * The redis-server fixture itself: its port is reserved for its whole scope (no other fixture is
 * handed it, even while the server is killed), and a restart whose port an outsider grabbed waits
 * for the port instead of moving or failing.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { RedisServer } from "./utils/RedisServer.js"

const lockFile = (port: number) => Path.join(Os.tmpdir(), "cache-aside-test-ports", `${port}.lock`)

/** Listens on `port` until the scope closes: a program outside the fixtures holding the port. */
const outsider = (port: number) =>
  Effect.acquireRelease(
    Effect.async<Net.Server>((resume) => {
      const server = Net.createServer((socket) => socket.destroy())
      server.once("error", (cause) => resume(Effect.die(cause)))
      server.listen(port, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
  )

describe("RedisServer fixture", () => {
  it.scopedLive(
    "a killed server's port stays reserved: servers started meanwhile get others, restart gets it back",
    () =>
      Effect.gen(function*() {
        const server = yield* RedisServer.make
        assert.isTrue(Fs.existsSync(lockFile(server.port)), "the port is locked for the scope")
        yield* server.kill
        assert.isTrue(Fs.existsSync(lockFile(server.port)), "the port stays locked while the server is down")
        const others = yield* Effect.forEach(Array.from({ length: 4 }), () => RedisServer.make, {
          concurrency: "unbounded"
        })
        for (const other of others) assert.notStrictEqual(other.port, server.port)
        yield* server.restart
        assert.strictEqual(yield* server.command("PING"), "+PONG")
      }),
    30_000
  )

  it.scopedLive("a restart waits out an outsider holding the port, then binds it again", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      yield* server.kill
      const scope = yield* Scope.make()
      yield* outsider(server.port).pipe(Scope.extend(scope))
      const started = yield* Deferred.make<void>()
      const restarting = yield* Effect.fork(
        Effect.zipRight(Deferred.succeed(started, undefined), server.restart)
      )
      yield* Deferred.await(started)
      yield* Effect.sleep("300 millis") // a few failed binds (the restart retries every 50 ms)
      assert.isNull(restarting.unsafePoll(), "the restart gave up or moved while the port was taken")
      yield* Scope.close(scope, Exit.void)
      yield* Fiber.join(restarting)
      assert.strictEqual(yield* server.command("PING"), "+PONG")
    }), 30_000)

  it.scoped("the lock is released with the scope", () =>
    Effect.gen(function*() {
      const port = yield* Effect.scoped(Effect.map(RedisServer.make, (server) => server.port))
      assert.isFalse(Fs.existsSync(lockFile(port)))
    }), 30_000)
})
