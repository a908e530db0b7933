/**
 * What gzip costs and saves per entry size, to choose the codec's default `compressAbove`:
 * `npx tsx bench/src/compression.ts` (about 10 seconds). Entries are JSON envelopes of realistic
 * records (ids, names, emails, ISO dates, tags), the shape the codec writes. Times are the minimum
 * of 9 short rounds (robust on a noisy machine). A hit pays gunzip; a miss pays gzip.
 */
import * as zlib from "node:zlib"

const words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo"]
let seed = 42
const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648
const pick = () => words[Math.floor(random() * words.length)]!
const record = () => ({
  id: 100000 + Math.floor(random() * 900000),
  name: `${pick()} ${pick()}`,
  email: `user${Math.floor(random() * 1e6)}@example.com`,
  born: new Date(Math.floor(random() * 1e12)).toISOString(),
  score: Math.round(random() * 1e4) / 100,
  tags: [pick(), pick()],
  active: random() > 0.5
})

/** The largest envelope of whole records not above `target` bytes. */
const payload = (target: number): string => {
  const v: Array<unknown> = [record()]
  let json = JSON.stringify({ v, x: 1764600000000, d: 12 })
  for (;;) {
    v.push(record())
    const next = JSON.stringify({ v, x: 1764600000000, d: 12 })
    if (next.length > target) return json
    json = next
  }
}

const microsPerCall = (f: () => void, millis: number): number => {
  let calls = 0
  const start = process.hrtime.bigint()
  let elapsed = 0
  while (elapsed < millis * 1e6) {
    for (let i = 0; i < 20; i++) f()
    calls += 20
    elapsed = Number(process.hrtime.bigint() - start)
  }
  return elapsed / calls / 1000
}
const time = (f: () => void): number => {
  microsPerCall(f, 20)
  return Math.min(...Array.from({ length: 9 }, () => microsPerCall(f, 25)))
}

/** Wire time of the bytes saved on a 1 Gbit/s link: 8 ns per byte. */
const wireMicros = (bytes: number) => bytes * 0.008

console.log(
  "| JSON bytes | gzip bytes | saved | gzip µs (miss) | gunzip µs (hit) | 1 Gbit/s wire µs saved | hit: gunzip − wire |"
)
console.log("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for (const target of [256, 512, 1024, 2048, 4096, 8192, 16384, 65536]) {
  const json = Buffer.from(payload(target))
  const gzipped = zlib.gzipSync(json)
  const gzip = time(() => zlib.gzipSync(json))
  const gunzip = time(() => zlib.gunzipSync(gzipped))
  const saved = json.length - gzipped.length
  console.log(
    `| ${json.length} | ${gzipped.length} | ${Math.round((100 * saved) / json.length)} % | ${gzip.toFixed(1)} | ${
      gunzip.toFixed(1)
    } | ${wireMicros(saved).toFixed(1)} | ${(gunzip - wireMicros(saved)).toFixed(1)} |`
  )
}
