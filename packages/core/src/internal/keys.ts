/**
 * The key layout: `prefix:namespace:version:key`, with the user's key encoded one-to-one onto
 * what every store keeps, and the translation of `invalidatePattern`'s globs over user keys into
 * globs over those encoded keys (`storePatterns`). Redis stores UTF-8, which turns every lone surrogate into U+FFFD, so
 * `id\uD800` and `id\uDBFF` would share one Redis key: ill-formed code units are escaped, and so is
 * the escape character itself, which keeps the encoding injective and identical on every store.
 *
 * @internal
 */
import * as Either from "effect/Either"
import { Buffer } from "node:buffer"
import * as Crypto from "node:crypto"
import * as Glob from "../Glob.js"

/**
 * How a key appears in logs, span attributes and error messages. Keys can be secrets (session
 * tokens, e-mail addresses): by default only a short hash is shown (`#` + the first 12 hex digits
 * of its SHA-256: enough to correlate lines about one key, not to recover it); with `logKeys: true`
 * the key itself.
 *
 * @internal
 */
export const labeller = (clear: boolean): (key: string) => string =>
  clear ? (key) => key : (key) => "#" + Crypto.hash("sha256", key, "hex").slice(0, 12)

/** DLE ("data link escape"): starts an escape; DLE DLE is a DLE, DLE `u` + 4 hex digits a lone surrogate. */
const ESC = "\u0010"

const needsEscape = (text: string): boolean => {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x10 || (c >= 0xd800 && c <= 0xdfff)) return true
  }
  return false
}

/**
 * Encodes a user key (or a glob pattern over user keys) losslessly: well-formed text without DLE
 * is unchanged (the common case, checked without allocating).
 *
 * @internal
 */
export const encode = (text: string): string => {
  if (!needsEscape(text)) return text
  let out = ""
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x10) {
      out += ESC + ESC
    } else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1)
      if (next >= 0xdc00 && next <= 0xdfff) {
        out += text[i]! + text[i + 1]!
        i++
      } else {
        out += ESC + "u" + c.toString(16)
      }
    } else if (c >= 0xd800 && c <= 0xdfff) {
      out += ESC + "u" + c.toString(16)
    } else {
      out += text[i]!
    }
  }
  return out
}

/** One code point (a lone surrogate included) as `encode` writes it. */
const encodePoint = (point: number): string =>
  point === 0x10
    ? ESC + ESC
    : point >= 0xd800 && point <= 0xdfff
    ? ESC + "u" + point.toString(16)
    : String.fromCodePoint(point)

const isLoneSurrogateAt = (text: string, i: number): boolean => {
  const c = text.charCodeAt(i)
  if (c >= 0xd800 && c <= 0xdbff) {
    const next = i + 1 < text.length ? text.charCodeAt(i + 1) : 0
    return !(next >= 0xdc00 && next <= 0xdfff)
  }
  return c >= 0xdc00 && c <= 0xdfff && !(i > 0 && text.charCodeAt(i - 1) >= 0xd800 && text.charCodeAt(i - 1) <= 0xdbff)
}

/**
 * The bytes a user key (or a pattern over user keys) stands for, as a byte string (one code unit a
 * byte): its UTF-8, with each lone surrogate as the three bytes of its generalized UTF-8 ("WTF-8",
 * `ED A0 80` for U+D800) as if it were a character. This is what `invalidatePattern` matches.
 *
 * @internal
 */
export const wtf8Bytes = (text: string): string => {
  if (!needsEscape(text)) return Glob.utf8Bytes(text)
  let out = ""
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c < 0x80) {
      out += text[i]!
    } else if (c < 0x800) {
      out += String.fromCharCode(0xc0 | (c >> 6), 0x80 | (c & 0x3f))
    } else if (c >= 0xd800 && c <= 0xdbff && !isLoneSurrogateAt(text, i)) {
      const point = text.codePointAt(i)!
      out += String.fromCharCode(
        0xf0 | (point >> 18),
        0x80 | ((point >> 12) & 0x3f),
        0x80 | ((point >> 6) & 0x3f),
        0x80 | (point & 0x3f)
      )
      i++
    } else {
      out += String.fromCharCode(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f))
    }
  }
  return out
}

/**
 * The code points of a byte string that `wtf8Bytes` wrote (a run of whole characters): each a
 * number, so that a lone high and a lone low surrogate stay two points (as a string they would
 * join into a pair, another character).
 */
const wtf8Points = (bytes: string): Array<number> => {
  const points: Array<number> = []
  let i = 0
  while (i < bytes.length) {
    const b = bytes.charCodeAt(i)
    const length = b < 0x80 ? 1 : b < 0xe0 ? 2 : b < 0xf0 ? 3 : 4
    let point = length === 1 ? b : length === 2 ? b & 0x1f : length === 3 ? b & 0x0f : b & 0x07
    for (let k = 1; k < length; k++) point = (point << 6) | (bytes.charCodeAt(i + k) & 0x3f)
    points.push(point)
    i += length
  }
  return points
}

/**
 * The most bytes (`wtf8Bytes`) a pattern of `invalidatePattern` may have. Real patterns are short;
 * the bound keeps every match of one key at most about 2,000 times the key's length (escapes double
 * a few bytes; on Redis, whose SCAN blocks every other client meanwhile, and in memory), and keeps a
 * pattern below Redis' limit of 1,000 nested stars, past which Redis stops matching and the
 * in-process matchers would not.
 *
 * @internal
 */
export const maxPatternBytes = 1024

/** Whether a byte string holds the generalized UTF-8 of a lone surrogate (`ED A0`–`ED BF`). */
const holdsSurrogate = (bytes: string): boolean => {
  for (let i = 0; i + 1 < bytes.length; i++) {
    if (bytes.charCodeAt(i) === 0xed && bytes.charCodeAt(i + 1) >= 0xa0) return true
  }
  return false
}

/** The index after a class that starts at `start` (after its `[`), read as Redis reads it. */
const classEnd = (bytes: string, start: number): number => {
  let i = start
  if (bytes[i] === "^") i++
  while (i < bytes.length) {
    if (bytes[i] === "\\" && bytes.length - i >= 2) i += 2
    else if (bytes[i] === "]") return i + 1
    else if (bytes.length - i >= 3 && bytes[i + 1] === "-") i += 3
    else i++
  }
  return i
}

/**
 * Translates a glob over user keys into the globs over encoded keys (the part after the key
 * prefix) that remove them. The pattern means what Redis would make of it against the user keys'
 * bytes (`wtf8Bytes`): `?` is one byte, a class a set of bytes.
 *
 * - For keys without DLE and without lone surrogates (encoded as themselves) the first glob is
 *   exact: the pattern itself, with literal DLEs and lone surrogates written as `encode` writes them.
 * - A key holding DLE or a lone surrogate is longer encoded than its bytes, so a `?` or a class
 *   (one byte) cannot match its escapes. When the pattern has one, a second glob removes every key
 *   that starts and ends with the pattern's literal ends and holds an escape (a DLE) between them:
 *   such keys may be removed although the pattern does not match them; keys without escapes never
 *   are. Stars, `\` escapes and literals alone need no second glob.
 *
 * Refused (the reason, as `Left`): a pattern longer than `maxPatternBytes`, and a class naming a
 * lone surrogate (a class is a set of bytes, and those bytes cannot be sent to Redis).
 *
 * @internal
 */
export const storePatterns = (pattern: string): Either.Either<ReadonlyArray<string>, string> => {
  const bytes = wtf8Bytes(pattern)
  if (bytes.length > maxPatternBytes) {
    return Either.left(
      `cache-aside: invalidatePattern's pattern has ${bytes.length} bytes in UTF-8, more than the ${maxPatternBytes} allowed`
    )
  }
  let out = ""
  let run = "" // literal bytes not written yet
  let literal = "" // the literal text since the last wildcard or class
  let escaped = false // whether that text holds a DLE or a lone surrogate
  let leading: readonly [string, boolean] | undefined // the literal text before the first wildcard or class
  let single = false // a `?` or a class: one byte
  const flush = (): void => {
    for (const point of wtf8Points(run)) {
      if (point === 0x10 || (point >= 0xd800 && point <= 0xdfff)) escaped = true
      const text = Glob.escape(encodePoint(point))
      literal += text
      out += text
    }
    run = ""
  }
  const wildcard = (text: string): void => {
    flush()
    if (leading === undefined) leading = [literal, escaped]
    literal = ""
    escaped = false
    out += text
  }
  let i = 0
  while (i < bytes.length) {
    const c = bytes[i]!
    if (c === "*") {
      wildcard("*")
      i++
    } else if (c === "?") {
      wildcard("?")
      single = true
      i++
    } else if (c === "[") {
      const end = classEnd(bytes, i + 1)
      const span = bytes.slice(i, end)
      if (holdsSurrogate(span)) {
        return Either.left("cache-aside: invalidatePattern's pattern has a class naming a lone surrogate")
      }
      wildcard(Buffer.from(span, "latin1").toString("utf8"))
      single = true
      i = end
    } else if (c === "\\" && i + 1 < bytes.length) {
      run += bytes[i + 1]!
      i += 2
    } else {
      run += c // a trailing "\\" is literal
      i++
    }
  }
  flush()
  if (!single || leading === undefined) return Either.right([out])
  // every key the pattern matches starts with `leading` and ends with the trailing literal: one
  // whose escapes are not in them holds an escape (a DLE) between them
  const middle = leading[1] || escaped ? "*" : `*${ESC}*`
  return Either.right([out, leading[0] + middle + literal])
}

const notText = (what: string, value: unknown): TypeError =>
  new TypeError(
    `cache-aside: ${what} must give a string, got ${
      value === null ? "null" : Array.isArray(value) ? "an array" : typeof value
    }`
  )

/**
 * The keys of one cache.
 *
 * @internal
 */
export class Keys {
  /** `prefix:namespace:version:` */
  readonly keyPrefix: string
  /** Every key of the namespace, all versions, as a glob pattern. */
  readonly namespacePattern: string
  /** Cross-process refresh hints: a segment no version can be (it holds a control character). */
  readonly hintPrefix: string
  constructor(prefix: string, namespace: string, version: string) {
    const namespacePrefix = `${prefix}:${namespace}:`
    this.keyPrefix = `${namespacePrefix}${version}:`
    this.namespacePattern = `${Glob.escape(namespacePrefix)}*`
    this.hintPrefix = `${namespacePrefix}${version}\u0000refresh:`
  }
  /**
   * The full key of a user key. A key function that returns no string (a JavaScript caller's
   * object, which would read as `[object Object]` and share one entry with every other object) is
   * a defect of the get, said plainly.
   */
  full(userKey: string): string {
    if (typeof userKey !== "string") throw notText("the key function", userKey)
    return this.keyPrefix + encode(userKey)
  }
  /** The short key beside an entry, leased by whoever reloads it in the background. */
  hint(full: string): string {
    return this.hintPrefix + full.slice(this.keyPrefix.length)
  }
  /**
   * The store patterns of a glob over user keys (`storePatterns`, after the escaped key prefix), or
   * why the glob is refused.
   */
  patterns(pattern: string): Either.Either<ReadonlyArray<string>, string> {
    if (typeof pattern !== "string") throw notText("invalidatePattern's pattern", pattern)
    const prefix = Glob.escape(this.keyPrefix)
    return Either.map(storePatterns(pattern), (patterns) => patterns.map((p) => prefix + p))
  }
  /** The first (for keys without escapes, exact) store pattern of a glob over user keys. */
  pattern(pattern: string): string {
    const patterns = this.patterns(pattern)
    if (Either.isLeft(patterns)) throw new RangeError(patterns.left)
    return patterns.right[0]!
  }
}
