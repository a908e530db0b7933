/**
 * Near caches of 4 processes on one real redis-server, kept coherent by RedisCacheBus: the
 * invalidations of a fifth process (this one, through the library) and raw `DEL`s by a plain
 * Redis client reach every L1; a killed subscriber connection flushes every L1. Counted: stale
 * reads that begin more than 100 ms after an invalidation returned (must be 0), flushes, L1 hits;
 * measured: propagation delay (printed, run with `--silent=false` to see it).
 */
import { CacheAside, Metrics } from "@cache-aside/core"
import { RedisCacheBus } from "@cache-aside/redis"
import { assert, describe, it } from "@effect/vitest"
import { Clock, Data, Effect, Layer, Option, Redacted, Schedule, type Scope } from "effect"
import * as ChildProcess from "node:child_process"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { type Config, marker, type Summary, Version } from "./fixtures/coherence-child.js"
import { plainClient } from "./utils/PlainClient.js"
import { RedisServer } from "./utils/RedisServer.js"

const root = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "..")
const childScript = Path.join(root, "test", "fixtures", "coherence-child.ts")

class ChildError extends Data.TaggedError("ChildError")<{ readonly message: string }> {}

interface Child {
  readonly waitFor: (name: string) => Effect.Effect<Record<string, unknown>, ChildError>
}

/** Spawns `node --import tsx test/fixtures/coherence-child.ts <config>`; killed with the scope. */
const spawnChild = (config: Config): Effect.Effect<Child, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = ChildProcess.spawn(process.execPath, ["--import", "tsx", childScript, JSON.stringify(config)], {
        cwd: root,
        stdio: ["ignore", "pipe", "pipe"]
      })
      const events: Array<Record<string, unknown>> = []
      const stderr: Array<string> = []
      let buffered = ""
      child.stdout.on("data", (chunk: Buffer) => {
        buffered += chunk.toString("utf8")
        let end: number
        while ((end = buffered.indexOf("\n")) >= 0) {
          const line = buffered.slice(0, end)
          buffered = buffered.slice(end + 1)
          if (line.startsWith(marker)) events.push(JSON.parse(line.slice(marker.length)))
        }
      })
      child.stderr.on("data", (chunk: Buffer) => stderr.push(chunk.toString("utf8")))
      const alive = () => child.exitCode === null && child.signalCode === null
      const waitFor = (name: string) =>
        Effect.suspend(() => {
          const found = events.find((e) => e.event === name)
          if (found !== undefined) return Effect.succeed(found)
          return alive()
            ? Effect.fail(new ChildError({ message: "not yet" }))
            : Effect.die(new ChildError({ message: `child ${child.pid} exited before "${name}":\n${stderr.join("")}` }))
        }).pipe(
          Effect.retry(Schedule.spaced("10 millis")),
          Effect.timeoutFail({
            duration: "30 seconds",
            onTimeout: () => new ChildError({ message: `child ${child.pid}: no "${name}" event\n${stderr.join("")}` })
          })
        )
      return { child, waitFor }
    }),
    ({ child }) =>
      Effect.sync(() => {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
      })
  )

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!

interface Invalidation {
  readonly key: string
  readonly version: number
  /** When the invalidation was sent. */
  readonly sent: number
  /** When the invalidation returned. */
  readonly at: number
  readonly how: "invalidate" | "raw DEL"
}

describe("near cache coherence across processes", () => {
  it.scopedLive(
    "4 processes: invalidations and raw writes reach every L1; no stale read 100 ms after; a killed subscriber flushes",
    () =>
      Effect.gen(function*() {
        const server = yield* RedisServer.make
        const raw = yield* plainClient(server)
        const namespace = "coherence"
        const keys = ["a", "b", "c", "d", "e", "f"]
        const config: Config = {
          url: server.url,
          namespace,
          keys,
          dbKey: "db:versions",
          stopKey: "test:stop",
          pauseMillis: 2,
          heartbeatMillis: 100
        }
        yield* Effect.promise(() => raw.hset(config.dbKey, Object.fromEntries(keys.map((k) => [k, "0"]))))
        const children = yield* Effect.forEach(Array.from({ length: 4 }), () => spawnChild(config), {
          concurrency: "unbounded"
        })
        yield* Effect.forEach(children, (child) => child.waitFor("ready"), { concurrency: "unbounded" })

        // this process invalidates through the library, with a near cache of its own
        const context = yield* Layer.build(
          Layer.provideMerge(
            RedisCacheBus.layer({ url: Redacted.make(server.url), commandTimeout: "2 seconds" }),
            Metrics.layer
          )
        )
        const cache = yield* CacheAside.make({
          namespace,
          key: (key: string) => key,
          schema: Version,
          lookup: (key: string) =>
            Effect.map(
              Effect.promise(() => raw.hget(config.dbKey, key)),
              (version) => version === null ? Option.none() : Option.some({ key, version: Number(version) })
            ),
          ttl: "1 minute",
          nearCache: { maxEntries: 100, ttl: "1 minute" }
        }).pipe(Effect.provide(context))

        const rounds = 48
        const invalidations: Array<Invalidation> = []
        for (let round = 1; round <= rounds; round++) {
          const key = keys[round % keys.length]!
          yield* Effect.promise(() => raw.hset(config.dbKey, key, String(round)))
          const how = round % 2 === 0 ? "invalidate" : "raw DEL"
          const sent = yield* Clock.currentTimeMillis
          if (how === "invalidate") yield* cache.invalidate(key)
          else yield* Effect.promise(() => raw.del(cache.keyOf(key)))
          invalidations.push({ key, version: round, sent, at: yield* Clock.currentTimeMillis, how })
          // halfway: cut every subscriber connection (the children's and ours)
          if (round === rounds / 2) yield* Effect.promise(() => raw.client("KILL", "TYPE", "pubsub"))
          yield* Effect.sleep("40 millis")
        }
        yield* Effect.sleep("300 millis")
        yield* Effect.promise(() => raw.set(config.stopKey, "1"))
        const summaries = (yield* Effect.forEach(children, (child) => child.waitFor("summary"), {
          concurrency: "unbounded"
        })) as unknown as ReadonlyArray<Summary>

        let stale = 0
        const staleReads: Array<string> = []
        const delays: Array<number> = []
        /** From sending an invalidation to its eviction reaching a process. */
        const arrivals: Array<number> = []
        const byHow: Record<Invalidation["how"], Array<number>> = { invalidate: [], "raw DEL": [] }
        for (const summary of summaries) {
          assert.strictEqual(summary.failures, 0)
          assert.isAbove(summary.metrics.nearHits, summary.gets / 2, "the near cache answered most gets")
          // flushed when the bus first became healthy, when its subscriber was killed, and when it came back
          assert.isAtLeast(summary.metrics.nearFlushes, 3)
          for (const inv of invalidations) {
            const seen = summary.seen[inv.key] ?? []
            for (const segment of seen) {
              if (segment.version < inv.version && segment.last > inv.at + 100) {
                stale++
                staleReads.push(
                  `pid ${summary.pid} read ${inv.key}@${segment.version} ${
                    segment.last - inv.at
                  } ms after ${inv.how} of @${inv.version}`
                )
              }
            }
            const arrival = (summary.evictions[inv.key] ?? []).find((t) => t >= inv.sent)
            assert.isDefined(arrival, `pid ${summary.pid} was never told to evict ${inv.key}@${inv.version}`)
            // while the subscribers reconnect after the cut, no message can arrive (the near
            // caches are bypassed meanwhile): arrival is measured on the rounds before the cut
            if (inv.version < rounds / 2) arrivals.push(arrival! - inv.sent)
            const fresh = seen.find((segment) => segment.version >= inv.version)
            assert.isDefined(fresh, `pid ${summary.pid} never saw ${inv.key}@${inv.version} (${inv.how})`)
            delays.push(Math.max(0, fresh!.first - inv.at))
            byHow[inv.how].push(Math.max(0, fresh!.first - inv.at))
          }
        }
        delays.sort((a, b) => a - b)
        arrivals.sort((a, b) => a - b)
        for (const list of Object.values(byHow)) list.sort((a, b) => a - b)
        const figures = (list: ReadonlyArray<number>) =>
          `p50 ${percentile(list, 0.5)} ms, p99 ${percentile(list, 0.99)} ms`
        console.log(
          `eviction arrival (before the cut) over ${arrivals.length} (process, invalidation) pairs: ${
            figures(arrivals)
          }, max ${arrivals[arrivals.length - 1]} ms`
        )
        console.log(
          `first fresh read over ${delays.length} (process, invalidation) pairs: p50 ${
            percentile(delays, 0.5)
          } ms, p99 ${percentile(delays, 0.99)} ms, max ${delays[delays.length - 1]} ms (invalidate: ${
            figures(byHow.invalidate)
          }; raw DEL: ${figures(byHow["raw DEL"])}); stale reads: ${stale}; gets: ${
            summaries.map((s) => s.gets).join(", ")
          }; L1 hits: ${summaries.map((s) => s.metrics.nearHits).join(", ")}; flushes: ${
            summaries.map((s) => s.metrics.nearFlushes).join(", ")
          }`
        )
        assert.strictEqual(
          stale,
          0,
          `stale reads that began more than 100 ms after an invalidation returned:\n${staleReads.join("\n")}`
        )
      }),
    120_000
  )
})
