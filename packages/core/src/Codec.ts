/**
 * Turns cache entries into bytes and back. The value's `Schema` encodes and decodes it, so a
 * `Date`, a `Uint8Array`, a `bigint` or a class instance comes back as what it was; the envelope is
 * JSON, gzip-compressed above a size threshold.
 *
 * Stored bytes are untrusted (another program, an older release or an attacker may have written
 * them), so decoding is total and bounded:
 *
 * - any failure, whatever throws inside (a stack overflow on deep nesting, a `RangeError`, a
 *   schema transformation), is a `CodecError`, never a defect;
 * - what is decoded, and what gunzip may produce, is bounded by `maxEntryBytes` (a `CodecError`
 *   with reason `"TooLarge"`);
 * - `__proto__` keys are dropped while parsing, so no decoded object's prototype can be swapped;
 * - error messages name the path and the expected type, never the offending value.
 *
 * Entries carry a format version (`"f"` in the envelope; absent means 1, today's format): a reader
 * that finds a newer version answers `{ _tag: "Newer" }`, which the read path leaves alone, so old
 * and new processes of a rolling deploy do not evict each other's entries.
 *
 * @since 0.1.0
 */
import * as Either from "effect/Either"
import type * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as zlib from "node:zlib"
import * as validate from "./internal/validate.js"

/**
 * A cached entry: a value, or a cached "not found".
 *
 * `expiresAt` is the logical expiry (epoch milliseconds) and `delta` how long the lookup that
 * produced the entry took (milliseconds); both are kept for refresh-ahead decisions.
 *
 * @since 0.1.0
 */
export type Entry<A> =
  | {
    readonly _tag: "Value"
    readonly value: A
    readonly expiresAt: number
    readonly delta: number
    readonly staleUntil?: number | undefined
  }
  | {
    readonly _tag: "NotFound"
    readonly expiresAt: number
    readonly delta: number
    readonly staleUntil?: number | undefined
  }

/**
 * What a key can hold: an entry, or a lease (a placeholder that a loader put there, see `lease`).
 *
 * @since 0.1.0
 */
export type Stored<A> = Entry<A> | { readonly _tag: "Lease" } | {
  /**
   * An entry written in a newer format than this version of the library reads (a rolling deploy):
   * a miss that is left alone, neither evicted as corrupt nor overwritten.
   */
  readonly _tag: "Newer"
}

/**
 * The entry format this release writes and the newest it reads. Entries of format 1 carry no `"f"`
 * field (absent means 1). A later release that changes the envelope writes `"f": 2` (or more); this
 * release reads such an entry as `{ _tag: "Newer" }`.
 *
 * @since 0.1.0
 */
export const formatVersion = 1

/**
 * The default bound on an entry's size: 16 MiB of JSON, before compression and after gunzip.
 *
 * @since 0.1.0
 */
export const defaultMaxEntryBytes = 16 * 1024 * 1024

/** Redis' largest string (`proto-max-bulk-len`, 512 MiB): no larger entry can be stored. */
const maxEntryBytesLimit = 512 * 1024 * 1024

/**
 * The default compression threshold: entries whose JSON is larger than this many bytes are
 * gzipped. Chosen from a measurement (CPU per encode and decode, bytes saved, per size): below
 * about 2 KiB, gunzip costs a hit more time than the bytes it saves are worth on a local network.
 *
 * @since 0.1.0
 */
export const defaultCompressAbove = 2048

const LEASE = "\u0000lease:"

/**
 * The bytes of a lease: a placeholder stored under a key while one process loads its value. They
 * start with a NUL byte, which neither JSON nor gzip does, so a lease is never mistaken for an entry.
 *
 * @example
 * ```ts
 * import { Codec } from "@cache-aside/core"
 * Codec.isLease(Codec.lease("a-random-token")) // true
 * ```
 *
 * @since 0.1.0
 */
export const lease = (token: string): Uint8Array => Buffer.from(LEASE + token, "utf8")

/**
 * Whether stored bytes are a lease.
 *
 * @example
 * ```ts
 * import { Codec } from "@cache-aside/core"
 * Codec.isLease(new TextEncoder().encode("{}")) // false
 * ```
 *
 * @since 0.1.0
 */
export const isLease = (bytes: Uint8Array): boolean => bytes.length > 0 && bytes[0] === 0

/**
 * Bytes could not be decoded into an entry (garbage, an older shape, a broken gzip stream), an
 * entry was larger than `maxEntryBytes` (`"TooLarge"`, on either side), a value could not be
 * encoded by its schema, or (for a cache with a signing key) an entry is unsigned or its signature
 * does not verify (`"Integrity"`). The message names the failure, and for a schema mismatch the path and the
 * expected type: never the value.
 *
 * @example
 * ```ts
 * import { Codec } from "@cache-aside/core"
 * const error = new Codec.CodecError({ reason: "TooLarge", message: "entry of 20000000 bytes exceeds maxEntryBytes (16777216)" })
 * ```
 *
 * @since 0.1.0
 */
export class CodecError extends Schema.TaggedError<CodecError>("@cache-aside/core/CodecError")("CodecError", {
  reason: Schema.Literal("Encode", "Decode", "TooLarge", "Integrity"),
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}

/**
 * @since 0.1.0
 */
export interface Codec<A> {
  /** Never throws: any failure is a `CodecError`. */
  readonly encode: (entry: Entry<A>) => Either.Either<Uint8Array, CodecError>
  /** Never throws: any failure is a `CodecError`. */
  readonly decode: (bytes: Uint8Array) => Either.Either<Stored<A>, CodecError>
}

/**
 * @since 0.1.0
 */
export interface Options {
  /**
   * Entries whose JSON is larger than this many bytes are gzip-compressed. Default
   * `defaultCompressAbove` (2048); `false` never compresses.
   */
  readonly compressAbove?: number | false | undefined
  /**
   * The largest entry, in bytes of JSON, that is written or decoded; gunzip stops producing output
   * past it. A larger entry is a `CodecError` with reason `"TooLarge"`. Default 16 MiB.
   */
  readonly maxEntryBytes?: number | undefined
}

/**
 * Checks codec options, with the message for the caller's typed error when they cannot work.
 *
 * @example
 * ```ts
 * import { Either } from "effect"
 * import { Codec } from "@cache-aside/core"
 *
 * Either.isLeft(Codec.validateOptions({ maxEntryBytes: 0 })) // true
 * ```
 *
 * @since 0.1.0
 */
export const validateOptions = (options: Options): Either.Either<Options, string> => {
  const notAnObject = validate.record("options", options)
  if (Either.isLeft(notAnObject)) return Either.left(notAnObject.left)
  const { compressAbove, maxEntryBytes } = options
  if (
    compressAbove !== undefined && compressAbove !== false &&
    !(typeof compressAbove === "number" && Number.isInteger(compressAbove) && compressAbove >= 0)
  ) {
    return Either.left(`compressAbove must be false or a non-negative integer of bytes, got ${String(compressAbove)}`)
  }
  if (
    maxEntryBytes !== undefined &&
    !(typeof maxEntryBytes === "number" && Number.isInteger(maxEntryBytes) && maxEntryBytes >= 64 &&
      maxEntryBytes <= maxEntryBytesLimit)
  ) {
    return Either.left(
      `maxEntryBytes must be an integer number of bytes between 64 and ${maxEntryBytesLimit}, got ${
        String(maxEntryBytes)
      }`
    )
  }
  return Either.right(options)
}

const GZIP_0 = 0x1f
const GZIP_1 = 0x8b

const toBuffer = (bytes: Uint8Array): Buffer =>
  Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)

const failure = (reason: CodecError["reason"], message: string) => Either.left(new CodecError({ reason, message }))

/** The name of what was thrown, never its message (a parser's message quotes the input). */
const thrown = (cause: unknown): string =>
  cause instanceof Error ? cause.name : typeof cause === "object" && cause !== null ? "object" : typeof cause

const clip = (text: string, max: number): string => text.length <= max ? text : `${text.slice(0, max)}…`

const segment = (key: PropertyKey): string =>
  typeof key === "number" ? `[${key}]` : typeof key === "symbol" ? "[symbol]" : `[${JSON.stringify(clip(key, 24))}]`

/**
 * Describes a schema failure by the path to its first leaf and what was expected there, never the
 * actual value (which may be a secret, or megabytes): a loop, not a recursion, so no nesting depth
 * can overflow the stack.
 */
const describeIssue = (root: ParseResult.ParseIssue): string => {
  const path: Array<string> = []
  let issue: ParseResult.ParseIssue = root
  for (let steps = 0; steps < 10_000; steps++) {
    switch (issue._tag) {
      case "Pointer": {
        const keys = Array.isArray(issue.path) ? issue.path : [issue.path]
        for (const key of keys) if (path.length < 8) path.push(segment(key as PropertyKey))
        issue = issue.issue
        continue
      }
      case "Composite":
        issue = Array.isArray(issue.issues) ? issue.issues[0] : issue.issues as ParseResult.ParseIssue
        continue
      case "Refinement":
      case "Transformation":
        if (issue._tag === "Refinement" && issue.kind === "Predicate") break
        issue = issue.issue
        continue
    }
    break
  }
  const where = path.length === 0 ? "value" : `value${path.join("")}`
  switch (issue._tag) {
    case "Missing":
      return `${where} is missing`
    case "Unexpected":
      return `${where} is unexpected`
    case "Forbidden":
      return `${where} cannot be decoded synchronously`
    case "Refinement":
    case "Type":
      return `${where}: expected ${clip(String(issue.ast), 80)}`
    default:
      return `${where} does not match the schema`
  }
}

/** Drops `__proto__` keys: returning `undefined` from a reviver removes the property. */
const dropProto = (key: string, value: unknown): unknown => key === "__proto__" ? undefined : value

/**
 * Parses JSON without `__proto__` keys. The reviver costs a call per value, so it only runs when
 * the text could hold such a key: spelled out, or hidden behind a `\u` escape.
 */
const parseJson = (text: string): unknown =>
  text.includes("__proto__") || text.includes("\\u") ? JSON.parse(text, dropProto) : JSON.parse(text)

interface Envelope {
  readonly v?: unknown
  readonly n?: unknown
  readonly x?: unknown
  readonly d?: unknown
  readonly f?: unknown
  /** The end of the entry's stale window when it is earlier than expiry + maxStale (a fail-safe throttle rewrite). */
  readonly s?: unknown
}

/**
 * Makes a codec for a schema whose encoded side is JSON-compatible.
 *
 * @example
 * ```ts
 * import { Either, Schema } from "effect"
 * import { Codec } from "@cache-aside/core"
 *
 * const codec = Codec.make(Schema.Struct({ at: Schema.Date }), { maxEntryBytes: 1024 * 1024 })
 * const bytes = Either.getOrThrow(codec.encode({ _tag: "Value", value: { at: new Date(0) }, expiresAt: 0, delta: 0 }))
 * const entry = Either.getOrThrow(codec.decode(bytes)) // entry.value.at is a Date again
 * ```
 *
 * @since 0.1.0
 */
export const make = <A, I>(schema: Schema.Schema<A, I, never>, options: Options = {}): Codec<A> => {
  // invalid options (which callers taking user input reject first, with `validateOptions`) fall
  // back to the defaults: a codec never throws
  const valid = Either.getOrElse(validateOptions(options), (): Options => ({}))
  const compressAbove = valid.compressAbove ?? defaultCompressAbove
  const maxEntryBytes = valid.maxEntryBytes ?? defaultMaxEntryBytes
  const encodeValue = Schema.encodeEither(schema)
  const decodeValue = Schema.decodeUnknownEither(schema)

  const encodeUnsafe = (entry: Entry<A>): Either.Either<Uint8Array, CodecError> => {
    let json: string
    if (entry._tag === "NotFound") {
      json = JSON.stringify({ n: 1, x: entry.expiresAt, d: entry.delta, s: entry.staleUntil })
    } else {
      const encoded = encodeValue(entry.value)
      if (Either.isLeft(encoded)) return failure("Encode", describeIssue(encoded.left.issue))
      json = JSON.stringify({ v: encoded.right, x: entry.expiresAt, d: entry.delta, s: entry.staleUntil })
    }
    const bytes = Buffer.from(json, "utf8")
    if (bytes.length > maxEntryBytes) {
      return failure("TooLarge", `entry of ${bytes.length} bytes exceeds maxEntryBytes (${maxEntryBytes})`)
    }
    return Either.right(compressAbove !== false && bytes.length > compressAbove ? zlib.gzipSync(bytes) : bytes)
  }

  const encode = (entry: Entry<A>): Either.Either<Uint8Array, CodecError> => {
    try {
      return encodeUnsafe(entry)
    } catch (cause) {
      // a cycle, a bigint left in the encoded side, a throwing transformation or toJSON
      return failure("Encode", `the value could not be encoded (${thrown(cause)})`)
    }
  }

  const envelope = (raw: unknown): Either.Either<Stored<A>, CodecError> => {
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return failure("Decode", "not an entry envelope")
    const { d, f, n, s, v, x } = raw as Envelope
    if (f !== undefined) {
      if (typeof f !== "number" || !Number.isInteger(f) || f < 1) return failure("Decode", "invalid format version")
      if (f > formatVersion) return Either.right({ _tag: "Newer" })
    }
    if (x !== undefined && !(typeof x === "number" && Number.isFinite(x))) return failure("Decode", "invalid expiry")
    if (d !== undefined && !(typeof d === "number" && Number.isFinite(d) && d >= 0)) {
      return failure("Decode", "invalid load time")
    }
    if (s !== undefined && !(typeof s === "number" && Number.isFinite(s))) {
      return failure("Decode", "invalid stale deadline")
    }
    const expiresAt = x ?? Number.POSITIVE_INFINITY
    const delta = d ?? 0
    const stale = s === undefined ? {} : { staleUntil: s }
    if (n === 1) return Either.right({ _tag: "NotFound", expiresAt, delta, ...stale })
    if (!("v" in raw)) return failure("Decode", "not an entry envelope")
    const value = decodeValue(v)
    if (Either.isLeft(value)) return failure("Decode", describeIssue(value.left.issue))
    return Either.right({ _tag: "Value", value: value.right, expiresAt, delta, ...stale })
  }

  const decodeUnsafe = (bytes: Uint8Array): Either.Either<Stored<A>, CodecError> => {
    let buffer = toBuffer(bytes)
    if (buffer.length > 0 && buffer[0] === 0) {
      return buffer.toString("utf8", 0, LEASE.length) === LEASE
        ? Either.right({ _tag: "Lease" })
        : failure("Decode", "unknown binary header")
    }
    if (buffer.length > maxEntryBytes) {
      return failure("TooLarge", `entry of ${buffer.length} bytes exceeds maxEntryBytes (${maxEntryBytes})`)
    }
    if (buffer.length >= 2 && buffer[0] === GZIP_0 && buffer[1] === GZIP_1) {
      try {
        buffer = zlib.gunzipSync(buffer, { maxOutputLength: maxEntryBytes })
      } catch (cause) {
        return (cause as { readonly code?: unknown } | null)?.code === "ERR_BUFFER_TOO_LARGE"
          ? failure("TooLarge", `entry inflates past maxEntryBytes (${maxEntryBytes})`)
          : failure("Decode", "corrupt gzip stream")
      }
    }
    let raw: unknown
    try {
      raw = parseJson(buffer.toString("utf8"))
    } catch (cause) {
      return failure("Decode", `not JSON (${thrown(cause)})`)
    }
    return envelope(raw)
  }

  const decode = (bytes: Uint8Array): Either.Either<Stored<A>, CodecError> => {
    try {
      return decodeUnsafe(bytes)
    } catch (cause) {
      // a stack overflow in a recursive schema, a throwing transformation, anything: a miss
      return failure("Decode", `the entry could not be decoded (${thrown(cause)})`)
    }
  }

  return { encode, decode }
}
