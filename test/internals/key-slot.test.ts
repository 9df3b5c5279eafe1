// The Redis Cluster hash slot of a key, as CLUSTER KEYSLOT computes it (values from the Redis Cluster spec and redis-cli).
import t from 'tap'
import { crc16, hashTag, keySlot } from '../../lib/cluster/key-slot.js'

t.test('CRC16/XMODEM and slots', async (t) => {
  t.equal(crc16('123456789'), 0x31c3, 'the spec\'s check value')
  t.equal(keySlot('foo'), 12182)
  t.equal(keySlot('bar'), 5061)
  t.equal(keySlot('{user1000}.following'), keySlot('user1000'), 'a hash tag decides')
  t.equal(keySlot('foo{}{bar}'), 8363, 'an empty first tag: the whole key')
  t.equal(hashTag('foo{}{bar}'), 'foo{}{bar}')
  t.equal(hashTag('foo{{bar}}zap'), '{bar')
  t.equal(keySlot('é'), 10180, 'non-ASCII keys hash their UTF-8 bytes')
})
