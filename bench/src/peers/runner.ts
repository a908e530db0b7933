/**
 * One measured run of one contender on one workload, in one mode: through Promises (one Promise
 * per get, `concurrency` async loops) or inside one Effect program (`concurrency` fibers, each an
 * `Effect.whileLoop` of gets). Measures wall time, the client's CPU (`process.cpuUsage`: the whole
 * Node process, the Redis server excluded) and what Redis did (commands processed, those run by Lua
 * scripts included, and its CPU, from `INFO`), and counts lookups and wrong answers. It never throws for a contender's failure: the
 * sample carries the error.
 */
import * as Effect from "effect/Effect"
import type * as ManagedRuntime from "effect/ManagedRuntime"
import type { Redis } from "ioredis"
import { performance } from "node:perf_hooks"
import type { Contender } from "./contenders.js"
import type { Row, Workload } from "./workloads.js"

export type Mode = "promise" | "effect"

export interface Sample {
  readonly ops: number
  readonly seconds: number
  readonly opsPerSecond: number
  /** Client CPU (user + system) per get, in microseconds. */
  readonly cpuMicrosPerOp: number
  /** Commands Redis processed per get (the `INFO` calls around the run excluded). */
  readonly redisCommandsPerOp: number
  /** Redis server CPU per get, in microseconds (coarse: Redis reports it in microseconds, sampled). */
  readonly redisCpuMicrosPerOp: number
  /** Redis calls per get by command (`INFO commandstats`, the `INFO` calls around the run excluded). */
  readonly redisCallsPerOp: Record<string, number>
  readonly lookups: number
  /** Gets that answered no row, or another key's row. */
  readonly wrong: number
  /** Changes of the library's own counters during the run (CacheAside: its Metrics snapshot). */
  readonly counters: Record<string, number>
  readonly error?: string | undefined
}

interface RedisFigures {
  readonly commands: number
  readonly cpuMicros: number
  /** Calls per command name (`INFO commandstats`). */
  readonly calls: Record<string, number>
}

/** A bound against a hung contender (a get that never answers): far above any run's length. */
const HANG_MILLIS = 60_000

/** The pause after a run's last get before its CPU and Redis figures are read (not timed). */
const SETTLE_MILLIS = 25

/** `INFO` costs three commands per reading: subtracted from the run's count. */
const INFO_COMMANDS = 3

const readRedis = async (admin: Redis): Promise<RedisFigures> => {
  const [stats, cpu, commandstats] = await Promise.all([
    admin.info("stats"),
    admin.info("cpu"),
    admin.info("commandstats")
  ])
  const field = (text: string, name: string) => Number(new RegExp(`^${name}:([0-9.]+)`, "m").exec(text)?.[1] ?? "0")
  const calls: Record<string, number> = {}
  for (const match of commandstats.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls[match[1]!] = Number(match[2])
  return {
    commands: field(stats, "total_commands_processed"),
    cpuMicros: (field(cpu, "used_cpu_user") + field(cpu, "used_cpu_sys")) * 1e6,
    calls
  }
}

/** When a loop starts its next get. */
type More = (started: number) => boolean

const moreOf = (budget: Workload["budget"], scale: number): More => {
  if (budget._tag === "ops") {
    const ops = Math.max(1, Math.floor(budget.ops * scale))
    return (started) => started < ops
  }
  const deadline = performance.now() + budget.millis * scale
  return () => performance.now() < deadline
}

interface LoopResult {
  readonly ops: number
  readonly wrong: number
}

const promiseLoop = async (
  get: (key: string) => Promise<Row | undefined>,
  keyOf: (i: number) => string,
  concurrency: number,
  more: More
): Promise<LoopResult> => {
  let started = 0
  let wrong = 0
  const worker = async () => {
    while (more(started)) {
      const key = keyOf(started++)
      const row = await get(key)
      if (row?.id !== key) wrong++
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return { ops: started, wrong }
}

const effectLoop = (
  get: (key: string) => Effect.Effect<Row | undefined, unknown>,
  keyOf: (i: number) => string,
  concurrency: number,
  more: More
): Effect.Effect<LoopResult, unknown> =>
  Effect.suspend(() => {
    let started = 0
    let wrong = 0
    const worker = Effect.suspend(() => {
      let key = ""
      return Effect.whileLoop({
        while: () => more(started),
        body: () => {
          key = keyOf(started++)
          return get(key)
        },
        step: (row) => {
          if (row?.id !== key) wrong++
        }
      })
    })
    const workers = concurrency === 1
      ? worker
      : Effect.forEach(Array.from({ length: concurrency }), () => worker, { concurrency, discard: true })
    return Effect.map(workers, () => ({ ops: started, wrong }))
  })

const callsPerOp = (before: Record<string, number>, after: Record<string, number>, ops: number) => {
  const perOp: Record<string, number> = {}
  for (const [name, calls] of Object.entries(after)) {
    const change = calls - (before[name] ?? 0) - (name === "info" ? INFO_COMMANDS : 0)
    if (change > 0) perOp[name] = Math.round(change / ops * 1000) / 1000
  }
  return perOp
}

const counterDelta = (before: Record<string, number>, after: Record<string, number>) => {
  const delta: Record<string, number> = {}
  for (const [name, value] of Object.entries(after)) {
    const change = value - (before[name] ?? 0)
    if (change !== 0) delta[name] = change
  }
  return delta
}

export interface RunInput {
  readonly contender: Contender
  readonly workload: Workload
  readonly mode: Mode
  /** Unique per run: the workload's keys for this run. */
  readonly epoch: number
  /** 1 for a measured run; less for a warm-up. */
  readonly scale: number
  readonly admin: Redis
  /** Runs the Effect-mode programs (a plain runtime: Effect's own, quiet logger). */
  readonly runtime: ManagedRuntime.ManagedRuntime<never, never>
}

export const runOnce = async (input: RunInput): Promise<Sample> => {
  const { admin, contender, mode, workload } = input
  const keyOf = workload.keys(input.epoch)
  const countersBefore = contender.counters === undefined ? {} : await contender.counters()
  const loadsBefore = contender.db.loads
  const redisBefore = await readRedis(admin)
  const cpuBefore = process.cpuUsage()
  const start = performance.now()
  let result: LoopResult = { ops: 0, wrong: 0 }
  let error: string | undefined
  let hangTimer: ReturnType<typeof setTimeout> | undefined
  try {
    const more = moreOf(workload.budget, input.scale)
    const loop = mode === "promise" || contender.getEffect === undefined
      ? promiseLoop(contender.get, keyOf, workload.concurrency, more)
      : input.runtime.runPromise(effectLoop(contender.getEffect, keyOf, workload.concurrency, more))
    const hung = new Promise<never>((_, reject) => {
      hangTimer = setTimeout(() => reject(new Error(`the run did not end within ${HANG_MILLIS} ms`)), HANG_MILLIS)
    })
    result = await Promise.race([loop, hung])
  } catch (cause) {
    error = cause instanceof Error ? cause.message : String(cause)
  } finally {
    clearTimeout(hangTimer)
  }
  const seconds = (performance.now() - start) / 1000
  // work a get left running (a background fill, a pipelined write) is charged to this run, not the next
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MILLIS))
  const cpu = process.cpuUsage(cpuBefore)
  const redisAfter = await readRedis(admin)
  const countersAfter = contender.counters === undefined ? {} : await contender.counters()
  const ops = Math.max(result.ops, 1)
  return {
    ops: result.ops,
    seconds,
    opsPerSecond: result.ops / seconds,
    cpuMicrosPerOp: (cpu.user + cpu.system) / ops,
    redisCommandsPerOp: Math.max(0, redisAfter.commands - redisBefore.commands - INFO_COMMANDS) / ops,
    redisCpuMicrosPerOp: (redisAfter.cpuMicros - redisBefore.cpuMicros) / ops,
    redisCallsPerOp: callsPerOp(redisBefore.calls, redisAfter.calls, ops),
    lookups: contender.db.loads - loadsBefore,
    wrong: result.wrong,
    counters: counterDelta(countersBefore, countersAfter),
    error
  }
}
