/**
 * Checks the names in an options object, as every layer of this library does: a key that
 * misspells an option (`negativeTTL`, `lock.wiat`, `maxEntires`) is refused, naming the option it
 * probably meant, because ignoring it would leave that option's feature silently off; any other
 * unknown key (a field of the application's own config spread into the options) is answered, to be
 * logged and ignored. Exported for custom `CacheStore` implementations, so that their options
 * behave like the built-in stores'. Messages show option names (quoted, clipped), never values.
 *
 * @since 0.1.0
 */
import * as Either from "effect/Either"

/** The longest option name shown or compared: a key is developer input, but need not be short. */
const maxShownName = 64

/**
 * Edit distance of two short strings, an adjacent swap counting as one edit (optimal string
 * alignment): enough to name the option a typo meant (`wiat` is one edit from `wait`).
 *
 * @example
 * ```ts
 * import { OptionNames } from "@cache-aside/core"
 *
 * OptionNames.distance("wait", "wiat") // 1
 * ```
 *
 * @since 0.1.0
 */
export const distance = (a: string, b: string): number => {
  const rows: Array<Array<number>> = [Array.from({ length: b.length + 1 }, (_, j) => j)]
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      row[j] = Math.min(rows[i - 1]![j]! + 1, row[j - 1]! + 1, rows[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        row[j] = Math.min(row[j]!, rows[i - 2]![j - 2]! + 1)
      }
    }
    rows.push(row)
  }
  return rows[a.length]![b.length]!
}

/**
 * The option `key` most likely misspells, if any: the nearest name, case aside, within two edits
 * (one for names of four letters or fewer: "ref" is not a typo of "key").
 *
 * @example
 * ```ts
 * import { OptionNames } from "@cache-aside/core"
 *
 * OptionNames.misspelled("negativeTTL", ["ttl", "negativeTtl"]) // "negativeTtl"
 * OptionNames.misspelled("ref", ["key"]) // undefined
 * ```
 *
 * @since 0.1.0
 */
export const misspelled = (key: string, names: ReadonlyArray<string>): string | undefined => {
  const lower = key.slice(0, maxShownName).toLowerCase()
  let nearest: string | undefined
  let nearestDistance = Number.POSITIVE_INFINITY
  for (const name of names) {
    const edits = distance(name.toLowerCase(), lower)
    if (edits <= (name.length <= 4 ? 1 : 2) && edits < nearestDistance) {
      nearest = name
      nearestDistance = edits
    }
  }
  return nearest
}

/**
 * Checks an option object's own keys that are not options. One that misspells an option is the
 * message (`Left`), naming the option it probably meant; the others are answered (`Right`, quoted
 * and clipped), to be logged, not refused. `what` prefixes the names of a nested object
 * (`"lock"` gives `lock.wiat`). `names` maps every known option to `true`: typed as
 * `Record<keyof Options, true>`, the compiler keeps it complete.
 *
 * @example
 * ```ts
 * import { Either } from "effect"
 * import { OptionNames } from "@cache-aside/core"
 *
 * interface Options {
 *   readonly host?: string
 *   readonly timeout?: number
 * }
 * const names: Record<keyof Options, true> = { host: true, timeout: true }
 *
 * OptionNames.check(undefined, { host: "db", timeuot: 5 }, names)
 * // Either.left('unknown option "timeuot"; did you mean "timeout"?')
 * const unknown = OptionNames.check(undefined, { host: "db", appName: "shop" }, names)
 * // Either.right(['"appName"']): log them, ignore them
 * console.log(Either.isRight(unknown))
 * ```
 *
 * @since 0.1.0
 */
export const check = (
  what: string | undefined,
  input: object | undefined,
  names: Readonly<Record<string, true>>
): Either.Either<ReadonlyArray<string>, string> => {
  if (input === undefined) return Either.right([])
  const path = (key: string) => what === undefined ? key : `${what}.${key}`
  const shown = (key: string) =>
    JSON.stringify(path(key.length > maxShownName ? `${key.slice(0, maxShownName)}…` : key))
  const candidates = Object.keys(names)
  const unknown: Array<string> = []
  for (const key of Object.keys(input)) {
    if (Object.hasOwn(names, key)) continue
    const near = misspelled(key, candidates)
    if (near !== undefined) {
      return Either.left(`unknown option ${shown(key)}; did you mean ${JSON.stringify(path(near))}?`)
    }
    unknown.push(shown(key))
  }
  return Either.right(unknown)
}
