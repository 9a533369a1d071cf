// Keycloak's official admin client against the emulator: the users API.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startEmulator } from "./emulator.mjs";

let emu;
before(async () => { emu = await startEmulator(); });
after(() => emu.stop());

const newUser = (username) => ({
  username, email: `${username}@example.org`, enabled: true, firstName: "New", lastName: "User",
  credentials: [{ type: "password", value: "a-good-password", temporary: false }],
});

test("client credentials auth gives the admin client a working token", async () => {
  const { kc } = await emu.realm();
  assert.ok(kc.accessToken);
  assert.equal(await kc.users.count(), 3);
});

test("create returns the id from Location and findOne reads the user back", async () => {
  const { kc } = await emu.realm();
  const { id } = await kc.users.create(newUser("Dana"));
  assert.match(id, /^[0-9a-f-]{36}$/);
  const u = await kc.users.findOne({ id });
  assert.equal(u.username, "dana");
  assert.equal(u.enabled, true);
});

test("findOne of an unknown id is null (the client maps the 404)", async () => {
  const { kc } = await emu.realm();
  assert.equal(await kc.users.findOne({ id: "00000000-0000-0000-0000-000000000000" }), null);
});

test("create of an existing username fails with Keycloak's 409 message", async () => {
  const { kc } = await emu.realm();
  await assert.rejects(kc.users.create(newUser("carol")), (err) => {
    assert.equal(err.response.status, 409);
    assert.deepEqual(err.responseData, { errorMessage: "User exists with same username" });
    return true;
  });
});

test("find supports exact username, search, paging and count filters", async () => {
  const { kc } = await emu.realm();
  const exact = await kc.users.find({ username: "carol", exact: true });
  assert.deepEqual(exact.map((u) => u.username), ["carol"]);
  const search = await kc.users.find({ search: "b" });
  assert.deepEqual(search.map((u) => u.username), ["bob"]);
  const page = await kc.users.find({ first: 1, max: 1 });
  assert.deepEqual(page.map((u) => u.username), ["bob"]);
  assert.equal(await kc.users.count({ search: "a" }), 1);
});

test("update is a full replace when attributes are sent, so GET-merge-PUT keeps everything", async () => {
  const { kc } = await emu.realm();
  const [carol] = await kc.users.find({ username: "carol", exact: true });
  const full = await kc.users.findOne({ id: carol.id });
  await kc.users.update({ id: carol.id }, { ...full, attributes: { ...full.attributes, title: ["Lead"] } });
  const after = await kc.users.findOne({ id: carol.id });
  assert.equal(after.firstName, "Carol");
  assert.deepEqual(after.attributes.title, ["Lead"]);
  assert.deepEqual(after.attributes.organization, ["Acme"]);
  await kc.users.update({ id: carol.id }, { attributes: { title: ["Only"] } });
  const partial = await kc.users.findOne({ id: carol.id });
  assert.equal(partial.firstName, undefined, "a partial PUT with attributes clears the names");
});

test("del removes the user", async () => {
  const { kc } = await emu.realm();
  const { id } = await kc.users.create(newUser("gone"));
  await kc.users.del({ id });
  assert.equal(await kc.users.findOne({ id }), null);
});

test("resetPassword changes the password used by the password grant", async () => {
  const { kc, name } = await emu.realm();
  const [carol] = await kc.users.find({ username: "carol", exact: true });
  await kc.users.resetPassword({ id: carol.id, credential: { type: "password", value: "a-new-password", temporary: false } });
  const user = await emu.login(name, "carol", "a-new-password");
  assert.ok(user.accessToken);
  await assert.rejects(emu.login(name, "carol", "carol-dev-password"), (err) => {
    assert.equal(err.response.status, 401);
    return true;
  });
});

test("resetPassword below the policy fails with the OAuth error shape", async () => {
  const { kc } = await emu.realm();
  const [carol] = await kc.users.find({ username: "carol", exact: true });
  await assert.rejects(
    kc.users.resetPassword({ id: carol.id, credential: { type: "password", value: "short", temporary: false } }),
    (err) => {
      assert.equal(err.response.status, 400);
      assert.equal(err.responseData.error, "invalidPasswordMinLengthMessage");
      return true;
    },
  );
});

test("getProfile shows the declared business attributes", async () => {
  const { kc } = await emu.realm();
  const profile = await kc.users.getProfile();
  const names = profile.attributes.map((a) => a.name);
  for (const n of ["organization", "phone", "department", "title"]) assert.ok(names.includes(n), n);
});
