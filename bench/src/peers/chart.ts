/**
 * The peers benchmark's chart: a hand-written SVG, one panel per mode, one group of bars per
 * workload, one bar per contender. Every bar is "× raw ioredis, higher is better" on a log scale
 * around 1×: for throughput workloads the ops/s ratio, for CPU workloads raw's CPU per get over
 * the contender's.
 */

export interface ChartBar {
  readonly contender: string
  /** × raw, higher is better; `undefined`: not measured in this mode. */
  readonly value: number | undefined
  /** A run of the cell threw, answered a wrong row or saw store errors: its label gets a "!". */
  readonly flagged: boolean
}

export interface ChartGroup {
  readonly label: string
  readonly sublabel: string
  readonly bars: ReadonlyArray<ChartBar>
}

export interface ChartPanel {
  readonly title: string
  readonly groups: ReadonlyArray<ChartGroup>
}

export interface ChartInput {
  readonly title: string
  readonly subtitle: string
  readonly contenders: ReadonlyArray<{ readonly id: string; readonly label: string }>
  readonly panels: ReadonlyArray<ChartPanel>
}

const COLORS = ["#6b7280", "#f59e0b", "#d97706", "#10b981", "#3b82f6", "#1d4ed8", "#a855f7", "#ef4444"]

const escapeXml = (text: string): string =>
  text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")

const fmt = (value: number): string => value >= 10 ? value.toFixed(0) : value >= 1 ? value.toFixed(1) : value.toFixed(2)

const WIDTH = 1200
const PANEL_HEIGHT = 330
const LEFT = 70
const RIGHT = 20
const LEGEND_COLUMNS = 3

/** The log2 range of the axis: powers of two around every value, 1× always inside. */
const axisRange = (values: ReadonlyArray<number>): { readonly lo: number; readonly hi: number } => {
  const logs = values.filter((v) => v > 0 && Number.isFinite(v)).map(Math.log2)
  return {
    lo: Math.max(-5, Math.min(-1, Math.floor(Math.min(...logs, 0)))),
    hi: Math.min(8, Math.max(1, Math.ceil(Math.max(...logs, 0))))
  }
}

const panelSvg = (
  panel: ChartPanel,
  input: ChartInput,
  top: number,
  range: { readonly lo: number; readonly hi: number }
): Array<string> => {
  const plotTop = top + 28
  const plotBottom = top + PANEL_HEIGHT - 44
  const y = (value: number) => plotTop + (range.hi - Math.log2(value)) / (range.hi - range.lo) * (plotBottom - plotTop)
  const out: Array<string> = [
    `<text x="${LEFT}" y="${top + 14}" font-size="15" font-weight="bold">${escapeXml(panel.title)}</text>`
  ]
  for (let p = range.lo; p <= range.hi; p++) {
    const v = Math.pow(2, p)
    const label = v >= 1 ? `${v}×` : `1/${1 / v}×`
    out.push(
      `<line x1="${LEFT}" x2="${WIDTH - RIGHT}" y1="${y(v)}" y2="${y(v)}" stroke="${
        p === 0 ? "#111" : "#ddd"
      }" stroke-width="${p === 0 ? 1.5 : 1}"/>`,
      `<text x="${LEFT - 6}" y="${y(v) + 4}" font-size="11" text-anchor="end">${label}</text>`
    )
  }
  const groupWidth = (WIDTH - LEFT - RIGHT) / Math.max(1, panel.groups.length)
  const barWidth = Math.min(26, (groupWidth - 24) / Math.max(1, input.contenders.length))
  panel.groups.forEach((group, g) => {
    const x0 = LEFT + g * groupWidth + (groupWidth - barWidth * input.contenders.length) / 2
    input.contenders.forEach((contender, c) => {
      const bar = group.bars.find((b) => b.contender === contender.id)
      const x = x0 + c * barWidth
      if (bar?.value === undefined || !(bar.value > 0)) return
      const clamped = Math.min(Math.max(bar.value, Math.pow(2, range.lo)), Math.pow(2, range.hi))
      const [yTop, yBottom] = clamped >= 1 ? [y(clamped), y(1)] : [y(1), y(clamped)]
      out.push(
        `<rect x="${x + 1}" y="${yTop}" width="${barWidth - 2}" height="${Math.max(1, yBottom - yTop)}" fill="${
          COLORS[c % COLORS.length]
        }"><title>${escapeXml(`${contender.label}: ${fmt(bar.value)}× raw`)}</title></rect>`,
        `<text x="${x + barWidth / 2}" y="${clamped >= 1 ? yTop - 3 : yBottom + 11}" font-size="9.5" ` +
          `text-anchor="middle">${fmt(bar.value)}${bar.flagged ? "!" : ""}</text>`
      )
    })
    const cx = LEFT + g * groupWidth + groupWidth / 2
    out.push(
      `<text x="${cx}" y="${plotBottom + 18}" font-size="12" font-weight="bold" text-anchor="middle">${
        escapeXml(group.label)
      }</text>`,
      `<text x="${cx}" y="${plotBottom + 32}" font-size="10.5" text-anchor="middle" fill="#444">${
        escapeXml(group.sublabel)
      }</text>`
    )
  })
  return out
}

export const renderChart = (input: ChartInput): string => {
  // the legend's rows, then the panels
  const top = 62 + Math.ceil(input.contenders.length / LEGEND_COLUMNS) * 18
  const height = top + PANEL_HEIGHT * input.panels.length + 10
  const values = input.panels.flatMap((p) => p.groups.flatMap((g) => g.bars.flatMap((b) => b.value ?? [])))
  const range = axisRange(values)
  const legend = input.contenders.map((contender, c) => {
    const x = LEFT + (c % LEGEND_COLUMNS) * 370
    const y = 56 + Math.floor(c / LEGEND_COLUMNS) * 18
    return `<rect x="${x}" y="${y - 10}" width="12" height="12" fill="${COLORS[c % COLORS.length]}"/>` +
      `<text x="${x + 17}" y="${y}" font-size="12">${escapeXml(contender.label)}</text>`
  })
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" ` +
    `font-family="Helvetica, Arial, sans-serif">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="${LEFT}" y="20" font-size="17" font-weight="bold">${escapeXml(input.title)}</text>`,
    `<text x="${LEFT}" y="36" font-size="11.5" fill="#444">${escapeXml(input.subtitle)}</text>`,
    ...legend,
    ...input.panels.flatMap((panel, i) => panelSvg(panel, input, top + i * PANEL_HEIGHT, range)),
    `</svg>`,
    ""
  ].join("\n")
}
