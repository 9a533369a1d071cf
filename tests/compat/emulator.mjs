// Starts the project's Keycloak emulator on a free port for one test file, and gives each test
// its own clone of the demo realm plus an admin client authenticated as the service account.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import path from "node:path";
import KcAdminClient from "@keycloak/keycloak-admin-client";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const CLIENT_ID = "user-sync";
// The demo realm's dev secrets (infra/keycloak/realm.json): local development only.
export const CLIENT_SECRET = "dev-only-user-sync-secret-not-for-production";
// The service client: its service account holds the realm-management roles.
export const ADMIN_CLIENT_ID = "user-sync-admin";
export const ADMIN_CLIENT_SECRET = "dev-only-user-sync-admin-secret-not-for-production";

export async function startEmulator() {
  const bin = process.env.KEYCLOAK_EMULATOR_BIN ?? path.join(root, "target/debug/keycloak-emulator");
  const child = spawn(bin, ["--realm", path.join(root, "infra/keycloak/realm.json"), "--port", "0"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const baseUrl = await new Promise((resolve, reject) => {
    let out = "";
    child.on("error", reject);
    child.on("exit", (code) => reject(new Error(`emulator exited with ${code}`)));
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const m = out.match(/listening on (http:\/\/[^\s]+)/);
      if (m) resolve(m[1]);
    });
  });
  let n = 0;
  return {
    baseUrl,
    stop: () => child.kill("SIGTERM"),
    /** A fresh realm for one test, and an admin client logged in with client credentials. */
    async realm() {
      const name = `compat-${process.pid}-${n++}`;
      const r = await fetch(`${baseUrl}/_emulator/realms`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ name, from: "demo" }),
      });
      if (r.status !== 201) throw new Error(`clone failed: ${r.status} ${await r.text()}`);
      const kc = new KcAdminClient({ baseUrl, realmName: name });
      await kc.auth({ grantType: "client_credentials", clientId: ADMIN_CLIENT_ID, clientSecret: ADMIN_CLIENT_SECRET });
      return { kc, name, baseUrl };
    },
    /** A password grant through the admin client's own token helper, as an app would do it. */
    async login(realmName, username, password) {
      const kc = new KcAdminClient({ baseUrl, realmName });
      await kc.auth({ grantType: "password", clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, username, password });
      return kc;
    },
  };
}
