/**
 * What one get costs, counted rather than timed: Effect primitives evaluated per get (a
 * `Supervisor` with op supervision sees each one, in every fiber of the get, background loads
 * included) and bytes allocated per get (V8's sampling heap profiler, objects that died young
 * included), with client CPU per get beside them. Counts barely move between runs of the same
 * code, so a change to the read path shows in them where timings drown in noise.
 *
 *     node --conditions=cache-aside-dist --import tsx src/cost.ts [memory|redis] [hit|miss] [gets]
 *
 * (`npx -y pnpm@10.34.9 --filter @cache-aside/bench cost` builds and runs all four.)
 */
import { CacheAside, MemoryCacheStore, Metrics } from "@cache-aside/core"
import { RedisCacheStore } from "@cache-aside/redis"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as RuntimeFlags from "effect/RuntimeFlags"
import * as RuntimeFlagsPatch from "effect/RuntimeFlagsPatch"
import * as Schema from "effect/Schema"
import * as Supervisor from "effect/Supervisor"
import type * as Inspector from "node:inspector"
import { Session } from "node:inspector/promises"
import { rowOf } from "./peers/workloads.js"
import { startRedis } from "./redis-server.js"

class OpCounter extends Supervisor.AbstractSupervisor<number> {
  ops = 0
  get value() {
    return Effect.sync(() => this.ops)
  }
  override onEffect(): void {
    this.ops++
  }
}

const Row = Schema.Struct({ id: Schema.String, name: Schema.String, email: Schema.String, score: Schema.Number })

interface Sampled {
  readonly selfSize: number
  readonly children: ReadonlyArray<Sampled>
}
const totalBytes = (node: Sampled): number =>
  node.children.reduce((sum, child) => sum + totalBytes(child), node.selfSize)

export const measure = (kind: "memory" | "redis", what: "hit" | "miss", gets: number, url?: string) =>
  Effect.gen(function*() {
    const counter = new OpCounter()
    const cache = yield* CacheAside.make({
      namespace: "cost",
      key: (key: string) => key,
      schema: Row,
      lookup: (key: string) => Effect.sync(() => Option.some(rowOf(key))),
      ttl: "1 hour"
    })
    const keyOf = (round: string, i: number) => what === "hit" ? "hot" : `${round}:${i}`
    const loop = (round: string) => {
      let i = 0
      return Effect.whileLoop({ while: () => i < gets, body: () => cache.get(keyOf(round, i++)), step: () => {} })
    }
    yield* loop("warm")
    // CPU first: op supervision and the heap profiler leave the code slower for a while after
    // (measured after them, a memory miss cost 55 µs of CPU; before them, 21 µs)
    const cpu = process.cpuUsage()
    yield* loop("cpu")
    const used = process.cpuUsage(cpu)
    // ops: the same loop under op supervision
    yield* loop("ops").pipe(
      Effect.supervised(counter),
      Effect.withRuntimeFlagsPatch(RuntimeFlagsPatch.enable(RuntimeFlags.OpSupervision))
    )
    const session = new Session()
    session.connect()
    let bytes = 0
    yield* Effect.acquireUseRelease(
      Effect.promise(() =>
        session.post("HeapProfiler.startSampling", {
          samplingInterval: 256,
          includeObjectsCollectedByMajorGC: true,
          includeObjectsCollectedByMinorGC: true
        } as unknown as Inspector.HeapProfiler.StartSamplingParameterType)
      ),
      () => loop("bytes"),
      () =>
        Effect.promise(async () => {
          const { profile } = await session.post("HeapProfiler.stopSampling")
          bytes = totalBytes(profile.head as unknown as Sampled)
        })
    )
    session.disconnect()
    return {
      kind,
      what,
      opsPerGet: counter.ops / gets,
      bytesPerGet: bytes / gets,
      cpuMicrosPerGet: (used.user + used.system) / gets
    }
  }).pipe(
    Effect.scoped,
    Effect.provide(
      Layer.merge(
        kind === "memory"
          ? MemoryCacheStore.layer()
          : RedisCacheStore.layer({ url: Redacted.make(url!) }).pipe(Layer.provide(Metrics.layer)),
        Metrics.layer
      )
    )
  )

const [kindArg, whatArg, getsArg] = process.argv.slice(2)
const kinds = kindArg === undefined ? ["memory", "redis"] as const : [kindArg as "memory" | "redis"]
const whats = whatArg === undefined ? ["hit", "miss"] as const : [whatArg as "hit" | "miss"]
const gets = Number(getsArg ?? 5000)
const server = kinds.includes("redis") ? await startRedis() : undefined
try {
  for (const kind of kinds) {
    for (const what of whats) {
      const r = await Effect.runPromise(measure(kind, what, gets, server?.url))
      console.log(
        `${kind} ${what}: ${r.opsPerGet.toFixed(1)} Effect ops, ${(r.bytesPerGet / 1024).toFixed(1)} KiB allocated, ${
          r.cpuMicrosPerGet.toFixed(1)
        } µs CPU per get`
      )
    }
  }
} finally {
  await server?.stop()
}
