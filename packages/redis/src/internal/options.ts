/**
 * Turns the public `RedisClient.Options` into ioredis options, validating every field: a value that
 * cannot make a working client (a port out of range, an infinite timeout, a malformed URL, a TLS
 * key that does not load) is a message for `InvalidStoreOptions` or a `ConfigError`, never a
 * defect and never a client that silently fails every command. The URL is parsed here, so ioredis
 * never sees it and no parse error can carry it; messages never include the URL, the password or
 * the TLS key.
 *
 * @internal
 */
import { InvalidStoreOptions } from "@cache-aside/core/CacheStore"
import * as ResilientCacheStore from "@cache-aside/core/ResilientCacheStore"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type { RedisOptions } from "ioredis"
import * as Crypto from "node:crypto"
import * as Tls from "node:tls"
import type * as RedisCacheBus from "../RedisCacheBus.js"
import type * as RedisCacheStore from "../RedisCacheStore.js"
import type { FromClientOptions, Options, TlsOptions } from "../RedisClient.js"
import * as validate from "./validate.js"

/** @internal */
export const defaultCommandTimeout: Duration.Duration = Duration.millis(250)
/** @internal */
export const defaultConnectTimeout: Duration.Duration = Duration.seconds(1)
/** The largest string Redis stores (`proto-max-bulk-len`'s default). @internal */
export const maxRedisStringBytes = 512 * 1024 * 1024
/** @internal */
export const defaultMaxEntryBytes = 16 * 1024 * 1024

/**
 * The time limit a client puts on its own commands, from its `commandTimeout` option: only a
 * finite, positive number is one (ioredis' default, `undefined`, is none).
 *
 * @internal
 */
export const ownTimeout = (commandTimeout: unknown): Option.Option<Duration.Duration> =>
  typeof commandTimeout === "number" && Number.isFinite(commandTimeout) && commandTimeout > 0
    ? Option.some(Duration.millis(commandTimeout))
    : Option.none()

/** The options this module resolves: `RedisClient.Options` (a type-only import: no cycle at run time). @internal */
type Input = Options
type TlsInput = TlsOptions

/** @internal */
export interface Resolved {
  readonly redis: RedisOptions
  readonly connectTimeoutMillis: number
  readonly maxEntryBytes: number
  readonly name: string
  /** Strings that must never appear in a log line (the password), for scrubbing error messages. */
  readonly secrets: ReadonlyArray<string>
}

interface UrlParts {
  readonly tls: boolean
  readonly host: string
  readonly port: number | undefined
  readonly username: string | undefined
  readonly password: string | undefined
  readonly db: number | undefined
}

const urlShape = "redis://[[username]:password@]host[:port][/db] or rediss://..."

const decodePart = (part: string): string | undefined => {
  if (part === "") return undefined
  try {
    return decodeURIComponent(part)
  } catch {
    return undefined
  }
}

/**
 * Parses a Redis URL. Errors name what is wrong and never include the URL (it may hold a password).
 *
 * @internal
 */
export const parseUrl = (url: string): Either.Either<UrlParts, string> => {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return Either.left(`url is not a valid URL (${urlShape}); the URL is not shown, it may hold a password`)
  }
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") {
    return Either.left(`url must use redis:// or rediss:// (${urlShape})`)
  }
  if (parsed.search !== "" || parsed.hash !== "") {
    return Either.left("url must not have query parameters or a fragment: give options instead")
  }
  const host = parsed.hostname.replace(/^\[(.*)\]$/, "$1")
  if (host === "") return Either.left(`url has no host (${urlShape})`)
  const port = parsed.port === "" ? undefined : Number(parsed.port)
  if (port === 0) return Either.left("url port must be between 1 and 65535")
  const path = parsed.pathname.replace(/^\//, "")
  let db: number | undefined
  if (path !== "") {
    if (!/^\d{1,9}$/.test(path)) return Either.left(`url path must be a database number (${urlShape})`)
    db = Number(path)
  }
  const username = decodePart(parsed.username)
  const password = decodePart(parsed.password)
  if ((parsed.username !== "" && username === undefined) || (parsed.password !== "" && password === undefined)) {
    return Either.left("url user information is not valid percent-encoding")
  }
  return Either.right({ tls: parsed.protocol === "rediss:", host, port, username, password, db })
}

const toBuffer = (value: string | Uint8Array): string | Buffer =>
  typeof value === "string" ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength)

/** At least one PEM certificate that parses (Node ignores a CA that is not one, and then trusts nothing). */
const isCertificate = (pem: string | Uint8Array): boolean => {
  const text = typeof pem === "string" ? pem : Buffer.from(pem).toString("latin1")
  if (!text.includes("-----BEGIN CERTIFICATE-----")) return false
  try {
    new Crypto.X509Certificate(text)
    return true
  } catch {
    return false
  }
}

const tlsOptions = (input: TlsInput): Either.Either<Tls.ConnectionOptions, string> => {
  const out: Tls.ConnectionOptions = {}
  if ((input.cert === undefined) !== (input.key === undefined)) {
    return Either.left("tls.cert and tls.key must be given together")
  }
  if (input.ca !== undefined) {
    out.ca = Array.isArray(input.ca)
      ? input.ca.map(toBuffer)
      : toBuffer(input.ca as string | Uint8Array)
  }
  if (input.cert !== undefined) out.cert = toBuffer(input.cert)
  if (input.key !== undefined) {
    if (!Redacted.isRedacted(input.key)) return Either.left("tls.key must be Redacted")
    out.key = toBuffer(Redacted.value(input.key))
  }
  if (input.servername !== undefined) {
    const servername = validate.name("tls.servername", input.servername)
    if (Either.isLeft(servername)) return Either.left(servername.left)
    out.servername = servername.right
  }
  if (input.rejectUnauthorized !== undefined) {
    const reject = validate.boolean("tls.rejectUnauthorized", input.rejectUnauthorized)
    if (Either.isLeft(reject)) return Either.left(reject.left)
    out.rejectUnauthorized = reject.right
  }
  for (const [what, pem] of [["tls.ca", input.ca], ["tls.cert", input.cert]] as const) {
    const pems = pem === undefined ? [] : Array.isArray(pem) ? pem : [pem as string | Uint8Array]
    for (const one of pems) {
      if (!isCertificate(one)) return Either.left(`${what} must be PEM certificates (file contents, not a path)`)
    }
  }
  try {
    // loads the CA, certificate and key now, so a bad file fails the layer instead of every connect
    Tls.createSecureContext({ ca: out.ca, cert: out.cert, key: out.key })
  } catch (error) {
    const reason = error instanceof Error ? error.message.slice(0, 200) : "unknown error"
    return Either.left(`tls: the CA, certificate or key cannot be loaded (${reason})`)
  }
  return Either.right(out)
}

type Check = Either.Either<unknown, string>

const firstError = (checks: ReadonlyArray<Check>): string | undefined => {
  for (const check of checks) if (Either.isLeft(check)) return check.left
  return undefined
}

/** What the checks produce: the decoded values `connection` builds on. */
interface Checked {
  readonly url: UrlParts | undefined
  readonly commandMillis: number
  readonly connectMillis: number
  readonly maxEntryBytes: number
  readonly tls: Tls.ConnectionOptions | undefined
}

const toMillis = (duration: Duration.Duration): number => Math.max(1, Math.ceil(Duration.toMillis(duration)))

/** Checks every field, the first problem as the message. */
const check = (input: Input): Either.Either<Checked, string> => {
  const notAnObject = validate.notAnObject("options", input)
  if (notAnObject !== undefined) return Either.left(notAnObject)
  let url: UrlParts | undefined
  if (input.url !== undefined) {
    if (!Redacted.isRedacted(input.url)) return Either.left("url must be Redacted")
    const parsed = parseUrl(Redacted.value(input.url))
    if (Either.isLeft(parsed)) return Either.left(parsed.left)
    url = parsed.right
  }
  if (input.password !== undefined && !Redacted.isRedacted(input.password)) {
    return Either.left("password must be Redacted")
  }
  const max = validate.maxTimerMillis
  const commandTimeout = validate.duration("commandTimeout", input.commandTimeout ?? defaultCommandTimeout, 1, max)
  const connectTimeout = validate.duration("connectTimeout", input.connectTimeout ?? defaultConnectTimeout, 1, max)
  const maxEntryBytes = validate.integer(
    "maxEntryBytes",
    input.maxEntryBytes ?? defaultMaxEntryBytes,
    1,
    maxRedisStringBytes
  )
  const tls = input.tls === undefined ? Either.right(undefined) : tlsOptions(input.tls)
  const error = firstError([
    commandTimeout,
    connectTimeout,
    maxEntryBytes,
    input.host === undefined ? Either.right(0) : validate.name("host", input.host),
    input.port === undefined ? Either.right(0) : validate.integer("port", input.port, 1, 65535),
    input.db === undefined ? Either.right(0) : validate.integer("db", input.db, 0, 2 ** 31 - 1),
    input.username === undefined ? Either.right(0) : validate.name("username", input.username),
    input.keyPrefix === undefined || typeof input.keyPrefix === "string"
      ? Either.right(0)
      : Either.left("keyPrefix must be a string"),
    input.name === undefined ? Either.right(0) : validate.name("name", input.name),
    tls
  ])
  if (error !== undefined) return Either.left(error)
  return Either.right({
    url,
    commandMillis: toMillis(Either.getOrThrow(commandTimeout)),
    connectMillis: toMillis(Either.getOrThrow(connectTimeout)),
    maxEntryBytes: Either.getOrThrow(maxEntryBytes),
    tls: Either.getOrThrow(tls)
  })
}

/** The ioredis options: safe defaults for a cache first, then the URL's fields, then the explicit fields. */
const connection = (input: Input, checked: Checked, password: string | undefined): RedisOptions => {
  const { url } = checked
  const redis: RedisOptions = {
    lazyConnect: false,
    // the store's commands go straight to the socket (internal/commands.ts): the commands of one
    // turn leave in one write without ioredis' per-command pipeline and setImmediate delay
    enableAutoPipelining: false,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: checked.commandMillis,
    connectTimeout: checked.connectMillis,
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 5), 1000)
  }
  const host = input.host ?? url?.host
  const port = input.port ?? url?.port
  const db = input.db ?? url?.db
  const username = input.username ?? url?.username
  if (host !== undefined) redis.host = host
  if (port !== undefined) redis.port = port
  if (db !== undefined) redis.db = db
  if (username !== undefined) redis.username = username
  if (password !== undefined) redis.password = password
  if (input.keyPrefix !== undefined && input.keyPrefix !== "") redis.keyPrefix = input.keyPrefix
  if (checked.tls !== undefined) redis.tls = checked.tls
  else if (url?.tls === true) redis.tls = {}
  return redis
}

/**
 * Validates the options and builds the ioredis options.
 *
 * @internal
 */
export const resolve = (input: Input): Either.Either<Resolved, string> =>
  Either.map(check(input), (checked) => {
    const password = input.password !== undefined ? Redacted.value(input.password) : checked.url?.password
    const secrets: Array<string> = []
    if (password !== undefined && password !== "") secrets.push(password)
    if (input.url !== undefined) secrets.push(Redacted.value(input.url))
    return {
      redis: connection(input, checked, password),
      connectTimeoutMillis: checked.connectMillis,
      maxEntryBytes: checked.maxEntryBytes,
      name: input.name ?? "default",
      secrets
    }
  })

/** Every key of an options type, so the compiler keeps a names list complete (none missing, none extra). */
type Names<T> = { readonly [P in keyof Required<T>]: true }

/**
 * The option names of one options object, and the shapes of its object-valued options.
 *
 * @internal
 */
export interface Shape {
  readonly names: Readonly<Record<string, true>>
  readonly nested?: Readonly<Record<string, Shape>> | undefined
}

const tlsNames: Names<TlsOptions> = { ca: true, cert: true, key: true, servername: true, rejectUnauthorized: true }
const clientNames: Names<Options> = {
  url: true,
  host: true,
  port: true,
  db: true,
  username: true,
  password: true,
  keyPrefix: true,
  commandTimeout: true,
  connectTimeout: true,
  maxEntryBytes: true,
  tls: true,
  name: true
}
const fromClientNames: Names<FromClientOptions> = { maxEntryBytes: true, name: true }
const resilienceNames: Names<ResilientCacheStore.Options> = ResilientCacheStore.optionNames
const storeNames: Names<RedisCacheStore.Options> = { ...clientNames, resilience: true }
const storeFromClientNames: Names<RedisCacheStore.FromClientOptions> = { ...fromClientNames, resilience: true }
const busLayerNames: Names<RedisCacheStore.Options & { readonly bus?: RedisCacheBus.Options | undefined }> = {
  ...storeNames,
  bus: true
}

/** `RedisClient.Options` (`make`, `layer`). @internal */
export const clientShape: Shape = { names: clientNames, nested: { tls: { names: tlsNames } } }
/** `RedisClient.FromClientOptions` (`fromClient`, `layerFromClient`). @internal */
export const fromClientShape: Shape = { names: fromClientNames }
/** `RedisCacheBus.Options` (`make`, `layerWithClient`, and `bus` of `layer`). @internal */
export const busShape: Shape = { names: { heartbeat: true } satisfies Names<RedisCacheBus.Options> }
/** `ResilientCacheStore.Options`, the stores' `resilience`. @internal */
export const resilienceShape: Shape = { names: resilienceNames }
/** `RedisCacheStore.Options` (`layer`): the client's and `resilience`. @internal */
export const storeShape: Shape = { names: storeNames, nested: { ...clientShape.nested, resilience: resilienceShape } }
/** `RedisCacheStore.FromClientOptions` (`layerFromClient`). @internal */
export const storeFromClientShape: Shape = { names: storeFromClientNames, nested: { resilience: resilienceShape } }
/** The options of `RedisCacheBus.layer`: the store's and `bus`. @internal */
export const busLayerShape: Shape = { names: busLayerNames, nested: { ...storeShape.nested, bus: busShape } }

/** An options object as a record of its fields, or `undefined` (its own check reports what else it is). */
const fieldsOf = (input: unknown): Readonly<Record<string, unknown>> | undefined =>
  typeof input === "object" && input !== null && !Array.isArray(input)
    ? input as Readonly<Record<string, unknown>>
    : undefined

const pathOf = (what: string | undefined, key: string) => what === undefined ? key : `${what}.${key}`

/**
 * The keys of `input`, and of its object-valued options, that are no option: a misspelled one is
 * the message; the others are answered (quoted, clipped, names only).
 *
 * @internal
 */
export const unknownNames = (
  what: string | undefined,
  input: unknown,
  shape: Shape
): Either.Either<ReadonlyArray<string>, string> =>
  Either.gen(function*() {
    const fields = fieldsOf(input)
    const unknown = [...yield* validate.known(what, fields, shape.names)]
    for (const [key, nested] of Object.entries(shape.nested ?? {})) {
      unknown.push(...yield* unknownNames(pathOf(what, key), fields?.[key], nested))
    }
    return unknown
  })

/**
 * Checks the option names of `input` when a layer is built: a misspelled one fails with
 * `InvalidStoreOptions`; the other unknown keys are logged once at WARN, by name only, and ignored.
 * `what` is the function (`RedisClient.make`): the log line names it, the error its module, as
 * the other option errors do. `path` names nested options (`bus`).
 *
 * @internal
 */
export const checkNames = (
  what: string,
  input: unknown,
  shape: Shape,
  path?: string
): Effect.Effect<void, InvalidStoreOptions> =>
  Effect.suspend(() => {
    const unknown = unknownNames(path, input, shape)
    if (Either.isLeft(unknown)) {
      return Effect.fail(new InvalidStoreOptions({ message: `${what.split(".")[0]}: ${unknown.left}` }))
    }
    return unknown.right.length === 0
      ? Effect.void
      // not a typo of an option (those are refused): a field of a larger config spread in, say
      : Effect.logWarning(`cache-aside: options ${what} does not know, ignored: ${unknown.right.join(", ")}`)
  })

/**
 * A copy of `input` with only its options (and only theirs in its object-valued options): what a
 * layer hands to the layers it builds on, so that they neither warn again nor see what is not theirs.
 *
 * @internal
 */
export const onlyKnown = <T>(input: T, shape: Shape): T => {
  const fields = fieldsOf(input)
  if (fields === undefined) return input
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(shape.names)) {
    const value = fields[key]
    if (value === undefined) continue
    const nested = shape.nested?.[key]
    out[key] = nested === undefined ? value : onlyKnown(value, nested)
  }
  return out as T
}
