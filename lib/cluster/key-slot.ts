// The Redis Cluster hash slot of a key (CRC16/XMODEM of its hash tag, mod 16384), as CLUSTER KEYSLOT computes it.

const TABLE = new Uint16Array(256)
for (let i = 0; i < 256; i++) {
  let c = i << 8
  for (let k = 0; k < 8; k++) c = (c & 0x8000) !== 0 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff
  TABLE[i] = c
}

/** CRC16/XMODEM (poly 0x1021, init 0) of a string's UTF-8 bytes. */
export function crc16 (s: string): number {
  let crc = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0x80) return crc16Bytes(Buffer.from(s, 'utf8')) // not ASCII: its UTF-8 bytes
    crc = ((crc << 8) & 0xffff) ^ TABLE[((crc >> 8) ^ c) & 0xff]
  }
  return crc
}

function crc16Bytes (bytes: Uint8Array): number {
  let crc = 0
  for (const b of bytes) crc = ((crc << 8) & 0xffff) ^ TABLE[((crc >> 8) ^ b) & 0xff]
  return crc
}

/** The hash tag of a key: what is between the first `{` and the next `}`, if not empty (else the whole key). */
export function hashTag (key: string): string {
  const open = key.indexOf('{')
  if (open !== -1) {
    const close = key.indexOf('}', open + 1)
    if (close > open + 1) return key.slice(open + 1, close)
  }
  return key
}

/** The slot (0-16383) of `key`. */
export function keySlot (key: string): number {
  return crc16(hashTag(key)) % 16384
}
