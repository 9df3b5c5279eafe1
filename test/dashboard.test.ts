// The dashboard in real Chromium (Debian's chromium, driven by puppeteer-core): the page asks for the token,
// shows every node and target, turns a killed target unhealthy within 3 s and shows the firing alert.
// Saves a screenshot: docs/dashboard.png (the README's) with UPDATE_SCREENSHOT=1, else in a temp dir so a test run
// leaves the tree clean. Skipped, saying why, when /usr/bin/chromium is absent.
import { existsSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { validateConfig } from '../lib/config/index.js'
import { startNode, type StartedNode } from '../plugins/gateway.js'
import { startRedis, type RedisProcess } from './helpers/redis.js'
import { startHealthUpstream, type HealthUpstream } from './helpers/health-upstream.js'
import { get } from './helpers/gateway.js'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const TOKEN = 'dashboard-admin-token'
const SCREENSHOT = process.env.UPDATE_SCREENSHOT === '1'
  ? fileURLToPath(new URL('../docs/dashboard.png', import.meta.url))
  : join(mkdtempSync(join(tmpdir(), 'fhg-dashboard-')), 'dashboard.png')

t.test('dashboard in Chromium', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is absent: apt-get install -y chromium (.ci/run installs it)` }, async (t) => {
  const { default: puppeteer } = await import('puppeteer-core')
  const redis: RedisProcess = await startRedis()
  const targets: HealthUpstream[] = []
  for (let i = 0; i < 3; i++) targets.push(await startHealthUpstream())
  const nodes: StartedNode[] = []
  let traffic: NodeJS.Timeout | undefined
  t.teardown(async () => {
    clearInterval(traffic)
    await Promise.all(nodes.map(async (n) => await n.close()))
    for (const u of targets) await u.close()
    await redis.stop()
  })
  for (const id of ['edge-1', 'edge-2']) {
    nodes.push(await startNode(validateConfig({
      node: { id, host: '127.0.0.1', port: 0 },
      cluster: { name: 'dashboard-demo', redis: redis.url, heartbeatInterval: 500 },
      upstreams: {
        users: {
          strategy: 'round_robin',
          targets: targets.map((u, i) => ({ id: `users-${i + 1}`, url: u.url })),
          healthCheck: { active: { path: '/health', interval: 300, timeout: 300, healthyThreshold: 1, unhealthyThreshold: 2 } },
        },
      },
      routes: [{ path: '/users', upstream: 'users' }],
      admin: { token: TOKEN },
      alerts: { interval: 1000 },
    })))
  }
  // some traffic for the chart
  let i = 0
  traffic = setInterval(() => { void get(`${nodes[i++ % 2].address}/users/${i}`).catch(() => {}) }, 40)

  const browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] })
  t.teardown(async () => { await browser.close() })
  const page = await browser.newPage()
  await page.setViewport({ width: 1280, height: 900 })
  const urls: string[] = []
  const authHeaders: Array<string | undefined> = []
  page.on('request', (r) => {
    urls.push(r.url())
    if (r.url().endsWith('/dashboard/data')) authHeaders.push(r.headers().authorization)
  })
  const errors: string[] = []
  page.on('pageerror', (e) => errors.push(String(e)))
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()) })

  const res = await page.goto(`${nodes[0].address}/gateway/dashboard`)
  t.equal(res?.status(), 200, 'the page is served without the token')
  await page.waitForSelector('#token', { visible: true })
  await page.type('#token', 'wrong')
  await page.click('#login-form button')
  await page.waitForFunction(() => document.getElementById('err')?.textContent?.includes('refused'), { timeout: 10_000 })
  t.pass('a wrong token is refused and the form comes back')
  await page.type('#token', TOKEN)
  await page.click('#login-form button')

  await page.waitForFunction(() => document.querySelectorAll('[data-node]').length === 2 && document.querySelectorAll('[data-target]').length === 3, { timeout: 20_000 })
  const shown = await page.$$eval('[data-node]', (els) => els.map((e) => e.getAttribute('data-node')))
  t.same(shown.sort(), ['edge-1', 'edge-2'], 'every node')
  await page.waitForFunction(() => [...document.querySelectorAll('[data-target]')].every((e) => e.getAttribute('data-health') === 'healthy'), { timeout: 10_000 })
  const tg = await page.$$eval('[data-target]', (els) => els.map((e) => e.getAttribute('data-target')))
  t.same(tg.sort(), ['users/users-1', 'users/users-2', 'users/users-3'], 'every target, healthy')
  t.equal(await page.evaluate(() => sessionStorage.getItem('fhg-admin-token')), TOKEN, 'the token is kept in sessionStorage')

  await new Promise((resolve) => setTimeout(resolve, 3000)) // a few chart points
  const t0 = Date.now()
  await targets[2].kill()
  await page.waitForFunction(() => document.querySelector('[data-target="users/users-3"]')?.getAttribute('data-health') === 'unhealthy', { timeout: 3000, polling: 50 })
  t.comment(`killed target shown unhealthy ${Date.now() - t0} ms after the kill`)
  t.pass('a killed target turns unhealthy on the open page within 3 s')
  // one of three down: healthy_ratio 0.67 < 0.7 fires the default low_healthy_instances
  await page.waitForSelector('[data-alert="low_healthy_instances"]', { timeout: 10_000 })
  t.pass('the firing alert shows')
  await new Promise((resolve) => setTimeout(resolve, 1500))
  await page.screenshot({ path: SCREENSHOT as `${string}.png`, fullPage: true })
  t.ok(existsSync(SCREENSHOT), `screenshot at ${SCREENSHOT}`)

  t.notOk(urls.some((u) => u.includes(TOKEN)), 'the token never goes in a URL')
  t.ok(authHeaders.length > 3 && authHeaders.slice(-3).every((h) => h === `Bearer ${TOKEN}`), 'data requests carry the token in Authorization')
  t.same(errors.filter((e) => !/401/.test(e)), [], 'no script error (CSP allows the page\'s own script and style)')
})
