/**
 * Redis glob patterns: escaping user-supplied text and matching in memory with the same rules as
 * Redis' `stringmatchlen` (`*`, `?`, `[abc]`, `[^a]`, `[a-z]`, `\x`).
 *
 * The matcher is iterative (the two-pointer wildcard algorithm: on a mismatch it only ever
 * backtracks to the last `*`), so it runs in O(pattern × key) steps for any pattern; a backtracking
 * regular expression takes exponential time on patterns such as `*a*a*a*a*a*a*a*a*b`.
 *
 * Keys and patterns are matched as Redis matches them: over the bytes of their UTF-8 encoding (the
 * bytes Redis is sent; a lone surrogate is sent, and matched, as U+FFFD). `?` and every class item
 * stand for one byte, so `?` does not match `é` (two bytes) and `??` does; a class is a set of
 * bytes, and a range compares bytes as signed `char`s as Redis' C code does on x86-64 and most
 * builds (`[a-é]` is the range from `a` down to the byte 0xC3, which holds 0x00–0x61 and
 * 0xC3–0xFF). The near cache, the memory store and the Redis store therefore remove the same keys.
 *
 * One difference from Redis remains: Redis gives up (no match) on patterns nested more than 1,000
 * stars deep; this matcher does not. (`invalidatePattern` refuses patterns long enough for that.)
 *
 * @since 0.1.0
 */
import { Buffer } from "node:buffer"

const special = /[*?[\]\\]/g

/**
 * Escapes every glob metacharacter so that the text matches only itself.
 *
 * @example
 * ```ts
 * import { Glob } from "@cache-aside/core"
 * Glob.escape("1*") // "1\\*"
 * ```
 *
 * @since 0.1.0
 */
export const escape = (text: string): string => text.replace(special, "\\$&")

/**
 * A text as the string of its UTF-8 bytes (one code unit per byte, as Latin-1 decodes them), which
 * makes code-unit matching byte matching. ASCII is returned as it is, without allocating.
 *
 * @internal
 */
export const utf8Bytes = (text: string): string => {
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) >= 0x80) return Buffer.from(text, "utf8").toString("latin1")
  }
  return text
}

/**
 * The order in which Redis compares the ends of a range: bytes as signed `char`s (0x80–0xFF below
 * 0x00–0x7F). Flipping the top bit maps that order onto 0–255.
 */
const signed = (byte: number): number => byte ^ 0x80

/** One element of a character class: a single byte, or an inclusive range of them (in `signed` order). */
type ClassItem = { readonly lo: number; readonly hi: number }

/** A pattern compiled into tokens; every token but `Star` matches exactly one byte. */
type Token =
  | { readonly _tag: "Star" }
  | { readonly _tag: "Any" }
  | { readonly _tag: "Literal"; readonly code: number }
  | {
    readonly _tag: "Class"
    readonly negate: boolean
    /** The class's bytes (`signed`) as disjoint ranges sorted by `lo`: membership is a binary search. */
    readonly ranges: ReadonlyArray<ClassItem>
  }

const STAR: Token = { _tag: "Star" }
const ANY: Token = { _tag: "Any" }

/**
 * Parses a class starting after its `[`, as Redis does: `\` quotes the next character, `x-y` is a
 * range (swapped when reversed; Redis reads `a-]` as a range too), and a class left open ends with
 * the pattern. Returns the token and the index after the class.
 */
const parseClass = (pattern: string, start: number): readonly [Token, number] => {
  let i = start
  const negate = pattern[i] === "^"
  if (negate) i++
  const items: Array<ClassItem> = []
  while (i < pattern.length) {
    const c = pattern.charCodeAt(i)
    if (c === 0x5c && pattern.length - i >= 2) { // "\"
      const quoted = signed(pattern.charCodeAt(i + 1))
      items.push({ lo: quoted, hi: quoted })
      i += 2
    } else if (c === 0x5d) { // "]"
      return [{ _tag: "Class", negate, ranges: disjoint(items) }, i + 1]
    } else if (pattern.length - i >= 3 && pattern[i + 1] === "-") {
      const start = signed(c)
      const end = signed(pattern.charCodeAt(i + 2))
      items.push({ lo: Math.min(start, end), hi: Math.max(start, end) })
      i += 3
    } else {
      items.push({ lo: signed(c), hi: signed(c) })
      i++
    }
  }
  return [{ _tag: "Class", negate, ranges: disjoint(items) }, i]
}

/**
 * A class's items as disjoint ranges sorted by `lo` (overlapping and adjacent ones merged), so
 * that a class of thousands of items (a hostile pattern) costs a binary search per byte, not
 * a scan of every item.
 */
const disjoint = (items: Array<ClassItem>): ReadonlyArray<ClassItem> => {
  items.sort((a, b) => a.lo - b.lo)
  const out: Array<{ lo: number; hi: number }> = []
  for (const item of items) {
    const last = out[out.length - 1]
    if (last !== undefined && item.lo <= last.hi + 1) last.hi = Math.max(last.hi, item.hi)
    else out.push({ lo: item.lo, hi: item.hi })
  }
  return out
}

/** Whether `code` is in one of `ranges` (disjoint, sorted by `lo`). */
const inRanges = (ranges: ReadonlyArray<ClassItem>, code: number): boolean => {
  let lo = 0
  let hi = ranges.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    const range = ranges[mid]!
    if (code < range.lo) hi = mid - 1
    else if (code > range.hi) lo = mid + 1
    else return true
  }
  return false
}

const compile = (pattern: string): ReadonlyArray<Token> => {
  const tokens: Array<Token> = []
  let i = 0
  while (i < pattern.length) {
    const c = pattern[i]!
    if (c === "*") {
      if (tokens[tokens.length - 1] !== STAR) tokens.push(STAR) // consecutive stars are one
      i++
    } else if (c === "?") {
      tokens.push(ANY)
      i++
    } else if (c === "[") {
      const [token, next] = parseClass(pattern, i + 1)
      tokens.push(token)
      i = next
    } else if (c === "\\" && i + 1 < pattern.length) {
      tokens.push({ _tag: "Literal", code: pattern.charCodeAt(i + 1) })
      i += 2
    } else {
      tokens.push({ _tag: "Literal", code: pattern.charCodeAt(i) }) // a trailing "\" is literal
      i++
    }
  }
  return tokens
}

const matchesOne = (token: Token, code: number): boolean => {
  switch (token._tag) {
    case "Star":
      return false
    case "Any":
      return true
    case "Literal":
      return token.code === code
    case "Class":
      return inRanges(token.ranges, signed(code)) !== token.negate
  }
}

/**
 * A count of matching steps that several matches share: each step takes one, and a match that finds
 * none left gives up (answers `false`) and sets `exceeded`.
 *
 * @internal
 */
export interface Budget {
  steps: number
  exceeded: boolean
}

/**
 * The two-pointer wildcard match: every token but a star consumes one byte; on a mismatch the
 * last star absorbs one more byte and matching resumes after it. Earlier stars never need to
 * be revisited, so the work is at most (key length + 1) × (tokens + 1) steps.
 */
const run = (tokens: ReadonlyArray<Token>, text: string, budget: Budget | undefined): boolean => {
  let t = 0
  let s = 0
  let starAt = -1
  let starText = 0
  while (s < text.length) {
    if (budget !== undefined && --budget.steps < 0) {
      budget.exceeded = true
      return false
    }
    const token = tokens[t]
    if (token !== undefined && token._tag === "Star") {
      starAt = t++
      starText = s
    } else if (token !== undefined && matchesOne(token, text.charCodeAt(s))) {
      t++
      s++
    } else if (starAt >= 0) {
      t = starAt + 1
      s = ++starText
    } else {
      return false
    }
  }
  while (t < tokens.length && tokens[t]!._tag === "Star") t++
  return t === tokens.length
}

/**
 * A matcher over byte strings (`utf8Bytes` of the pattern and of each text), optionally counting
 * its steps against a budget.
 *
 * @internal
 */
export const bytesMatcher = (pattern: string, budget?: Budget): (text: string) => boolean => {
  // Redis' SCAN and KEYS treat a lone "*" as "every key", the empty key included; for any other
  // pattern its matcher needs at least one byte of key to match a star against
  if (pattern === "*") return () => true
  const tokens = compile(pattern)
  return (text) => text.length === 0 ? pattern.length === 0 : run(tokens, text, budget)
}

/**
 * Compiles a Redis glob pattern into a predicate over whole keys, matched over their UTF-8 bytes as
 * Redis matches them. Compile once, match many keys: the pattern is parsed here, and each match
 * takes at most (key bytes + 1) × (pattern bytes + 1) steps, whatever the pattern.
 *
 * @example
 * ```ts
 * import { Glob } from "@cache-aside/core"
 * Glob.matcher("user:*")("user:1") // true
 * Glob.matcher("h[a-e]llo")("hello") // true
 * ```
 *
 * @since 0.1.0
 */
export const matcher = (pattern: string): (text: string) => boolean => {
  const matches = bytesMatcher(utf8Bytes(pattern))
  return (text) => matches(utf8Bytes(text))
}
