/**
 * The Redis connection's health, and what may be said about a client error. A refused password or
 * a failed TLS handshake is not an outage that will pass by itself: it is logged ONCE at ERROR per
 * episode, counted (`authFailures`, `tlsFailures`), and kept as a health state
 * (`"unhealthy: auth"`, `"unhealthy: tls"`) visible in `RedisClient.health` and in the
 * `cache_aside_store_unhealthy` gauge, not just as an open circuit breaker.
 *
 * ioredis errors carry the command's arguments (`command.args`: AUTH's password, keys, values):
 * only `safeMessage` of an error ever leaves this package, never the error object.
 *
 * @internal
 */
import type { StoreRecorder } from "@cache-aside/core/Metrics"
import * as Metric from "effect/Metric"
import * as MetricLabel from "effect/MetricLabel"

/**
 * `"healthy"`: connected and answering; `"connecting"`: not (yet, or no longer) connected, for a
 * reason that may pass (Redis down, network); `"unhealthy: auth"`: the server refused the
 * credentials; `"unhealthy: tls"`: the TLS handshake failed (certificate, server name, client
 * certificate); `"unhealthy: acl"`: the user may not run a command the store needs.
 *
 * @internal
 */
export type Health = "healthy" | "connecting" | "unhealthy: auth" | "unhealthy: tls" | "unhealthy: acl"

type Problem = "auth" | "tls" | "acl"

const tlsCodes = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_GET_ISSUER_CERT",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "CERT_SIGNATURE_FAILURE",
  "HOSTNAME_MISMATCH"
])

const messageOf = (error: unknown): string =>
  error instanceof Error ? error.message : typeof error === "string" ? error : "unknown error"

const codeOf = (error: unknown): string =>
  typeof error === "object" && error !== null && typeof (error as { code?: unknown }).code === "string"
    ? (error as { code: string }).code
    : ""

/**
 * What a client error says about the connection's configuration, if anything.
 *
 * @internal
 */
export const classify = (error: unknown): Problem | undefined => {
  const message = messageOf(error)
  if (/\b(WRONGPASS|NOAUTH)\b|invalid (username-)?password/i.test(message)) return "auth"
  if (/\bNOPERM\b|user executing the script can't run|no permissions to (run|access)/i.test(message)) return "acl"
  const code = codeOf(error)
  if (tlsCodes.has(code) || code.startsWith("ERR_TLS_") || code.startsWith("ERR_SSL_")) return "tls"
  if (/certificate|SSL routines|tlsv1 alert|ssl3_|wrong version number/i.test(message)) return "tls"
  return undefined
}

/**
 * The error's message (never its other fields), without any of `secrets`, at most 300 characters.
 *
 * @internal
 */
export const safeMessage = (error: unknown, secrets: ReadonlyArray<string>): string => {
  let message = messageOf(error)
  for (const secret of secrets) {
    if (secret.length > 0) message = message.split(secret).join("<redacted>")
  }
  return message.length > 300 ? `${message.slice(0, 300)}...` : message
}

const unhealthyGauge = Metric.gauge("cache_aside_store_unhealthy", {
  description: "1 while the store cannot be used because of its configuration, by reason (auth, tls, acl)"
})

const problems: ReadonlyArray<Problem> = ["auth", "tls", "acl"]

const problemMessage: { readonly [K in Problem]: string } = {
  auth: "Redis refused the credentials (wrong password or user): the cache is bypassed until they are fixed",
  tls: "the TLS handshake with Redis failed (certificate, CA or server name): the cache is bypassed until it is fixed",
  acl: "the Redis user may not run a command the cache needs (see the minimal ACL in the README): those operations fail"
}

/** Where the tracker reports: a log line at a level, with the store's name. @internal */
export type Report = (level: "error" | "warn" | "info" | "debug", message: string) => void

/**
 * Health of one client. `onError` for every client error, `onReady` when the connection is ready,
 * `onClose` when it is lost.
 *
 * @internal
 */
export class Tracker {
  private current: Health = "connecting"
  private readonly tags: ReadonlyArray<MetricLabel.MetricLabel>
  private readonly problemTags: { readonly [K in Problem]: ReadonlyArray<MetricLabel.MetricLabel> }
  constructor(
    readonly store: string,
    private readonly secrets: ReadonlyArray<string>,
    private readonly report: Report,
    private readonly recorder: StoreRecorder | undefined
  ) {
    this.tags = [MetricLabel.make("store", store)]
    this.problemTags = {
      auth: [...this.tags, MetricLabel.make("reason", "auth")],
      tls: [...this.tags, MetricLabel.make("reason", "tls")],
      acl: [...this.tags, MetricLabel.make("reason", "acl")]
    }
    for (const problem of problems) unhealthyGauge.unsafeUpdate(0, this.problemTags[problem])
  }

  get health(): Health {
    return this.current
  }

  private set(next: Health): void {
    const previous = this.current
    this.current = next
    for (const problem of problems) {
      const on = next === `unhealthy: ${problem}`
      if (on !== (previous === `unhealthy: ${problem}`)) {
        unhealthyGauge.unsafeUpdate(on ? 1 : 0, this.problemTags[problem])
      }
    }
  }

  /** A client error: logged at DEBUG (message only); a configuration problem once at ERROR per episode. */
  onError(error: unknown): void {
    const message = safeMessage(error, this.secrets)
    const problem = classify(error)
    if (problem === undefined || this.current === `unhealthy: ${problem}`) {
      this.report("debug", `cache-aside: redis client error (store ${this.store}): ${message}`)
      return
    }
    this.set(`unhealthy: ${problem}`)
    if (problem === "auth") this.recorder?.increment("authFailures")
    if (problem === "tls") this.recorder?.increment("tlsFailures")
    this.report("error", `cache-aside: ${problemMessage[problem]} (store ${this.store}): ${message}`)
  }

  /** A command was refused for lack of permission (`NOPERM`): unhealthy until the next ready connection. */
  onCommandError(error: unknown): void {
    if (classify(error) === "acl" && this.current !== "unhealthy: acl") this.onError(error)
  }

  onReady(): void {
    const previous = this.current
    this.set("healthy")
    if (previous.startsWith("unhealthy")) {
      this.report("info", `cache-aside: Redis connection healthy again (store ${this.store}), was ${previous}`)
    }
  }

  onClose(): void {
    // a configuration problem stays until a connection is ready: reconnect attempts repeat it
    if (this.current === "healthy") this.set("connecting")
  }
}
