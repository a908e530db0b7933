/**
 * Runs one contender on one peers workload in one mode, over and over for a while, so a profiler
 * sees nothing else: `node --cpu-prof --import tsx src/profile.ts cache-aside-near D effect 5000`.
 * Arguments: contender id (`raw`, `cache-aside`, `cache-aside-near`), workload (A to E), mode
 * (`promise`, `effect`), milliseconds (default 5000). Prints the gets, client CPU per get and socket
 * writes per get (each a system call: on a VM often the larger part of a get's CPU; commands corked
 * together count once).
 */
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import { Redis } from "ioredis"
import { Socket } from "node:net"
import * as Contenders from "./peers/contenders.js"
import { type Mode, runOnce } from "./peers/runner.js"
import { makeWorkloads } from "./peers/workloads.js"
import { startRedis } from "./redis-server.js"

/** Socket writes that reach the kernel: a write on an uncorked socket, or the uncork of a corked one. */
let writes = 0
const write = Socket.prototype.write
Socket.prototype.write = function(this: Socket, ...args: Array<unknown>): boolean {
  if (this.writableCorked === 0) writes++
  return Reflect.apply(write, this, args) as boolean
} as typeof write
const uncork = Socket.prototype.uncork
Socket.prototype.uncork = function(this: Socket) {
  if (this.writableCorked === 1 && this.writableLength > 0) writes++
  return uncork.call(this)
}

const [id = "cache-aside-near", workloadId = "D", mode = "effect", millisText = "5000"] = process.argv.slice(2)
const millis = Number(millisText)
const server = await startRedis()
const admin = new Redis(server.url)
const contender = id === "raw"
  ? Contenders.raw(server.url)
  : await Contenders.cacheAside(server.url, id === "cache-aside-near" ? Contenders.NEAR_CACHE : undefined)
const workload = makeWorkloads({ runMillis: Number(process.env["RUN_MS"] ?? 500), zipfOps: 10_000 }).find((w) =>
  w.id === workloadId
)!
contender.db.delayMillis = workload.lookupMillis
const runtime = ManagedRuntime.make(Layer.empty)
const deadline = Date.now() + millis
let epoch = 0
let ops = 0
let cpu = 0
let runWrites = 0
while (Date.now() < deadline) {
  if (workload.flushBeforeRun) await admin.flushall()
  const before = writes
  const sample = await runOnce({ contender, workload, mode: mode as Mode, epoch: epoch++, scale: 1, admin, runtime })
  runWrites += writes - before
  if (sample.error !== undefined) throw new Error(sample.error)
  ops += sample.ops
  cpu += sample.cpuMicrosPerOp * sample.ops
}
console.log(
  `${id} ${workloadId} ${mode}: ${ops} gets, ${(cpu / ops).toFixed(1)} µs client CPU per get, ${
    (runWrites / ops).toFixed(2)
  } socket writes per get (the runner's INFO calls included)`
)
await contender.close()
await runtime.dispose()
await admin.quit()
await server.stop()
