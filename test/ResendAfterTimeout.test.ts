/**
 * A command the store gave up on (its deadline passed), on a connection that is then cut, is not
 * run by the reconnected client: ioredis resends a connection's unanswered commands after it
 * reconnects (`autoResendUnfulfilledCommands`, on by default and for caller-built clients), which
 * would write a lease, or a value, that its caller no longer owns and nobody releases. Redis is held
 * with `CLIENT PAUSE` (commands wait unprocessed, and go with their connection), the connection cut
 * from the client's side; once the pause ends, the reconnected client must not run the old command.
 * Counted: the lease under the key, the scripts Redis ran.
 */
import * as RedisClient from "@cache-aside/redis/RedisClient"
import { assert, describe, it } from "@effect/vitest"
import { assertTrue } from "@effect/vitest/utils"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import type { Socket } from "node:net"
import { plainClient } from "./utils/PlainClient.js"
import { RedisServer } from "./utils/RedisServer.js"

const text = (s: string) => new TextEncoder().encode(s)

describe("a command given up on, then its connection cut", () => {
  it.scopedLive(
    "is not resent after the reconnect: a timed-out lease-read leaves no lease nobody owns",
    () =>
      Effect.gen(function*() {
        const server = yield* RedisServer.make
        const plain = yield* plainClient(server)
        const redis = yield* RedisClient.make({ url: Redacted.make(server.url), commandTimeout: "200 millis" })
        yield* redis.getOrLeaseBuffer("warm", text("lease-warm"), 60_000) // connected, the script known
        const before = yield* server.commandCalls
        yield* server.command("CLIENT", "PAUSE", "1500", "ALL")
        const exit = yield* Effect.exit(redis.getOrLeaseBuffer("k", text("lease-k"), 60_000))
        assertTrue(Exit.isFailure(exit), "the lease-read times out while Redis is paused") // cut from the client's side: Redis drops the paused command with its connection; ioredis
         // keeps it to send again on the next connection
        ;(redis.connection!.stream as Socket).destroy()
        // once the pause is over and the client reconnected, a read on the new connection: what the
        // client sent before it on that connection has run
        yield* Effect.retry(
          redis.getBuffer("probe"),
          Schedule.intersect(Schedule.spaced("50 millis"), Schedule.recurs(200))
        )
        assert.isNull(
          yield* Effect.promise(() => plain.getBuffer("k")),
          "a resent lease-read wrote a lease nobody owns"
        )
        const after = yield* server.commandCalls
        const scripts = (calls: ReadonlyMap<string, number>) => (calls.get("evalsha") ?? 0) + (calls.get("eval") ?? 0)
        // the probe's read script only
        assert.strictEqual(scripts(after) - scripts(before), 1, "the timed-out lease-read ran")
      }),
    30_000
  )
})
