// Keycloak's official admin client against the emulator: roles, groups, sessions, events.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startEmulator } from "./emulator.mjs";

let emu;
before(async () => { emu = await startEmulator(); });
after(() => emu.stop());

const userId = async (kc, username) => (await kc.users.find({ username, exact: true }))[0].id;

test("realm role mappings: available, add with id and name, list, composite, remove", async () => {
  const { kc } = await emu.realm();
  const id = await userId(kc, "carol");
  const available = await kc.users.listAvailableRealmRoleMappings({ id });
  const manager = available.find((r) => r.name === "manager");
  await kc.users.addRealmRoleMappings({ id, roles: [{ id: manager.id, name: manager.name }] });
  const direct = (await kc.users.listRealmRoleMappings({ id })).map((r) => r.name).sort();
  assert.deepEqual(direct, ["default-roles-demo", "manager"]);
  const composite = (await kc.users.listCompositeRealmRoleMappings({ id })).map((r) => r.name);
  assert.ok(composite.includes("user"));
  await kc.users.delRealmRoleMappings({ id, roles: [{ id: manager.id, name: manager.name }] });
  assert.deepEqual((await kc.users.listRealmRoleMappings({ id })).map((r) => r.name), ["default-roles-demo"]);
});

test("role members are listed by role name", async () => {
  const { kc } = await emu.realm();
  const admins = await kc.roles.findUsersWithRole({ name: "admin" });
  assert.deepEqual(admins.map((u) => u.username), ["alice"]);
});

test("groups: find, members, add and remove a user", async () => {
  const { kc } = await emu.realm();
  const groups = await kc.groups.find();
  assert.deepEqual(groups.map((g) => g.name), ["engineering", "support"]);
  const eng = groups.find((g) => g.name === "engineering");
  const id = await userId(kc, "carol");
  await kc.users.addToGroup({ id, groupId: eng.id });
  assert.deepEqual((await kc.groups.listMembers({ id: eng.id })).map((u) => u.username), ["alice", "carol"]);
  assert.deepEqual((await kc.users.listGroups({ id })).map((g) => g.path), ["/engineering", "/support"]);
  await kc.users.delFromGroup({ id, groupId: eng.id });
  assert.deepEqual((await kc.groups.listMembers({ id: eng.id })).map((u) => u.username), ["alice"]);
});

test("sessions: a login shows up, deleteSession ends it", async () => {
  const { kc, name } = await emu.realm();
  await emu.login(name, "carol", "carol-dev-password");
  const id = await userId(kc, "carol");
  const sessions = await kc.users.listSessions({ id });
  assert.equal(sessions.length, 1);
  assert.equal(sessions[0].username, "carol");
  await kc.realms.deleteSession({ realm: name, session: sessions[0].id, isOffline: false });
  assert.deepEqual(await kc.users.listSessions({ id }), []);
});

test("logout ends every session of the user", async () => {
  const { kc, name } = await emu.realm();
  await emu.login(name, "carol", "carol-dev-password");
  await emu.login(name, "carol", "carol-dev-password");
  const id = await userId(kc, "carol");
  assert.equal((await kc.users.listSessions({ id })).length, 2);
  await kc.users.logout({ id });
  assert.deepEqual(await kc.users.listSessions({ id }), []);
});

test("events: login events and their config", async () => {
  const { kc, name } = await emu.realm();
  await emu.login(name, "carol", "carol-dev-password");
  const events = await kc.realms.findEvents({ realm: name, type: "LOGIN" });
  assert.equal(events.length, 1);
  assert.equal(events[0].details.username, "carol");
  const config = await kc.realms.getConfigEvents({ realm: name });
  assert.equal(config.eventsEnabled, true);
  assert.equal(config.adminEventsEnabled, true);
});

test("admin events: user create, update and delete, newest first", async () => {
  const { kc, name } = await emu.realm();
  const { id } = await kc.users.create({ username: "evan", enabled: true });
  await kc.users.update({ id }, { firstName: "Evan" });
  await kc.users.del({ id });
  const events = await kc.realms.findAdminEvents({ realm: name, resourceTypes: ["USER"] });
  assert.deepEqual(events.map((e) => e.operationType), ["DELETE", "UPDATE", "CREATE"]);
  assert.ok(events.every((e) => e.resourcePath === `users/${id}`));
});
