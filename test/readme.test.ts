import t from 'tap'
import { readFileSync } from 'node:fs'
import { optionsTableMarkdown } from '../lib/config/index.js'

t.test('the README opens with the two commands', async (t) => {
  const head = readFileSync(new URL('../README.md', import.meta.url), 'utf8').split('\n').slice(0, 15).join('\n')
  t.match(head, /npm install && npm start/)
  t.match(head, /npm test/)
})

t.test('the README options table is the schema, row for row', async (t) => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
  const m = /<!-- options:start -->\n([\s\S]*?)\n<!-- options:end -->/.exec(readme)
  t.ok(m, 'README has the options markers')
  t.equal(m?.[1], optionsTableMarkdown(), 'regenerate with: npx fastify-ha-gateway options')
})
