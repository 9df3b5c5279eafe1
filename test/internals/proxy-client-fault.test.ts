import t from 'tap'
import { isClientFault } from '../../lib/proxy/classify.js'

const whole = { complete: true, destroyed: false }

t.test('a failure the client caused is told from the target\'s', async (t) => {
  t.ok(isClientFault(Object.assign(new Error('expect header not supported'), { code: 'UND_ERR_NOT_SUPPORTED' }), whole), 'undici refused a header')
  t.ok(isClientFault(new Error('wrapped', { cause: Object.assign(new Error('x'), { code: 'UND_ERR_INVALID_ARG' }) }), whole), 'found in a cause')
  t.ok(isClientFault(Object.assign(new Error('aborted'), { code: 'ECONNRESET' }), { complete: false, destroyed: true }), 'the client left mid-body')
  t.notOk(isClientFault(Object.assign(new Error('reset'), { code: 'ECONNRESET' }), whole), 'an upstream reset after a whole body is the target\'s')
  t.notOk(isClientFault(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }), { complete: false, destroyed: false }), 'a body still coming in: the target\'s')
  t.notOk(isClientFault(new Error('x'), undefined), 'unknown error, no client state')
})
