// Sign-in in a real browser: Debian's Chromium driven by playwright-core through the demo app
// (Keycloak's own keycloak-js adapter), Keycloak's login page (the emulator) and the API.
// Run by tests/e2e/tests/browser.rs against the local stack, which passes its addresses:
// API_URL, KEYCLOAK_URL, REALM, DEMO_URL, and ARTIFACTS (screenshots of failures go there).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync } from 'node:fs'
import { chromium } from 'playwright-core'

const { API_URL, KEYCLOAK_URL, REALM, DEMO_URL, ARTIFACTS } = process.env
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium'
// Without the background-networking flags Chromium keeps dialling out, which this closed
// network refuses.
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync']

async function json (url, init) {
  const r = await fetch(url, init)
  return { status: r.status, body: await r.json().catch(() => null) }
}

/** A user registered through the API, not signed in yet. */
async function newUser (prefix) {
  const username = `${prefix}-${Date.now()}-${Math.floor(Math.random() * 1e6)}`
  const r = await json(`${API_URL}/auth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      username, email: `${username}@example.org`, password: 'a-good-password',
      firstName: 'Browser', lastName: 'User'
    })
  })
  assert.equal(r.status, 201, JSON.stringify(r.body))
  return username
}

/** An admin ends a session in Keycloak (the console's "Sign out"), as the service account. */
async function endSessionInKeycloak (sid) {
  const token = await json(`${KEYCLOAK_URL}/realms/${REALM}/protocol/openid-connect/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      client_id: 'user-sync-admin',
      client_secret: 'dev-only-user-sync-admin-secret-not-for-production'
    })
  })
  const r = await fetch(`${KEYCLOAK_URL}/admin/realms/${REALM}/sessions/${sid}`, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${token.body.access_token}` }
  })
  assert.equal(r.status, 204)
}

/** A fresh browser; on failure the page is kept as a screenshot under ARTIFACTS. */
async function inBrowser (name, scenario) {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS })
  const page = await browser.newPage()
  const seen = []
  page.on('console', (m) => seen.push(`${m.type()}: ${m.text()}`))
  try {
    await scenario(page)
  } catch (e) {
    mkdirSync(ARTIFACTS, { recursive: true })
    await page.screenshot({ path: `${ARTIFACTS}/${name}.png`, fullPage: true }).catch(() => {})
    e.message += `\n  page: ${page.url()}\n  console:\n    ${seen.join('\n    ')}`
    throw e
  } finally {
    await browser.close()
  }
}

/** Keycloak's login page, filled in and sent. */
async function signInOnKeycloaksPage (page, username, screenshot) {
  await page.waitForSelector('#kc-form-login')
  assert.match(await page.title(), /Sign in to your account/)
  if (screenshot) {
    mkdirSync(ARTIFACTS, { recursive: true })
    await page.screenshot({ path: `${ARTIFACTS}/${screenshot}.png` })
  }
  await page.fill('#username', username)
  await page.fill('#password', 'a-good-password')
  await page.click('#kc-login')
}

test('keycloak-js signs in on the login page, the app syncs the user, and a session ended in Keycloak is refused', async () => {
  const username = await newUser('kcjs')
  await inBrowser('keycloak-js', async (page) => {
    await page.goto(DEMO_URL)
    await signInOnKeycloaksPage(page, username, 'login-page')
    const status = page.locator('#status[data-state="signed-in"]')
    await status.waitFor({ timeout: 15000 })
    assert.equal(await status.textContent(), `Signed in as ${username}`)
    await page.screenshot({ path: `${ARTIFACTS}/demo-page.png` })
    await page.click('#me')
    await page.locator('#me-status[data-status="200"]').waitFor()
    // An admin signs the session out in Keycloak: back-channel logout ends it here at once.
    await endSessionInKeycloak(await status.getAttribute('data-session'))
    await page.click('#me')
    await page.locator('#me-status[data-status="401"]').waitFor()
  })
})

test('the server-side flow signs in through /auth/authorize, the login page and /auth/callback', async () => {
  const username = await newUser('server')
  await inBrowser('server-side', async (page) => {
    await page.goto(`${DEMO_URL}/sign-in`)
    await signInOnKeycloaksPage(page, username)
    const status = page.locator('#status[data-state="signed-in-server"]')
    await status.waitFor({ timeout: 15000 })
    assert.equal(await status.textContent(), `Signed in as ${username}`)
    assert.ok(!page.url().includes('token'), page.url())
  })
})
