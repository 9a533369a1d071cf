// The demo app: keycloak-js signs in on Keycloak's page (standard flow, PKCE S256), then the
// access token tells the API who signed in (POST /auth/sync) and calls it (GET /auth/me).
import Keycloak from '/vendor/keycloak.js'

const config = await (await fetch('/config.json')).json()
const keycloak = new Keycloak({ url: config.keycloak, realm: config.realm, clientId: config.clientId })
const status = document.getElementById('status')

function show (state, text) {
  status.dataset.state = state
  status.textContent = text
}

try {
  await keycloak.init({
    onLoad: 'login-required',
    pkceMethod: 'S256',
    responseMode: 'fragment',
    checkLoginIframe: false
  })
  const synced = await fetch(`${config.api}/auth/sync`, {
    method: 'POST',
    headers: { authorization: `Bearer ${keycloak.token}` }
  })
  const body = await synced.json()
  if (synced.ok) {
    show('signed-in', `Signed in as ${body.user.username}`)
    status.dataset.session = body.sessionId
    document.getElementById('user').textContent = JSON.stringify(body.user, null, 2)
  } else {
    show('failed', `POST /auth/sync answered ${synced.status} ${body.code}`)
  }
} catch (e) {
  show('failed', `sign-in failed: ${e}`)
}

document.getElementById('me').addEventListener('click', async () => {
  const me = await fetch(`${config.api}/auth/me`, {
    headers: { authorization: `Bearer ${keycloak.token}` }
  })
  const out = document.getElementById('me-status')
  out.dataset.status = String(me.status)
  out.textContent = `GET /auth/me: ${me.status}`
})

document.getElementById('logout').addEventListener('click', () => {
  keycloak.logout({ redirectUri: `${window.location.origin}/` })
})
