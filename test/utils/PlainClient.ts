/**
 * A plain ioredis client on a test's `redis-server`: a client that does not use this library (to
 * look at what the stores wrote, or to write as another application would), disconnected when the
 * scope closes.
 */
import * as Effect from "effect/Effect"
import { Redis } from "ioredis"

export const plainClient = (server: { readonly url: string }) =>
  Effect.acquireRelease(Effect.sync(() => new Redis(server.url)), (redis) => Effect.sync(() => redis.disconnect()))
