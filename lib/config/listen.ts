// `host:port` of a listener of its own (admin.listen, metrics.listen), as the schema accepts it.

export interface ListenAddress { host: string, port: number }

/** `127.0.0.1:9901` -> { host, port }; `[::1]:9901` -> { host: '::1', port }. Throws a TypeError naming `path` on a bad value. */
export function parseListen (value: string, path: string): ListenAddress {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]/]+)):(\d{1,5})$/.exec(value)
  const port = m === null ? NaN : Number(m[3])
  if (m === null || port > 65535) throw new TypeError(`${path} must be host:port (e.g. 127.0.0.1:9901), got ${JSON.stringify(value)}`)
  return { host: m[1] ?? m[2], port }
}
