// Drives a running espace-api with the unmodified fhir-kit-client (npm).
// Env: FHIR_BASE_URL (the server's base URL), FHIR_TOKEN (an operator access token).
// Prints one JSON line per check ({"check": name, "ok": true}) and exits 1 on the first
// failure (with {"check": name, "ok": false, "error": ...}). Run by
// tests/compat/test_fhir_kit_client.py.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';

import { Client } from 'fhir-kit-client';

const baseUrl = process.env.FHIR_BASE_URL;
const token = process.env.FHIR_TOKEN;
if (!baseUrl || !token) {
  console.error('FHIR_BASE_URL and FHIR_TOKEN are required');
  process.exit(2);
}

const INS = 'urn:oid:1.2.250.1.213.1.4.10';
const client = new Client({ baseUrl, bearerToken: token });
const header = (result, name) => Client.httpFor(result).response.headers.get(name);
const newIns = () => String(BigInt('0x' + randomUUID().replace(/-/g, ''))).slice(0, 15);
const patient = (ins, family = 'Kitclient') => ({
  resourceType: 'Patient',
  identifier: [{ system: INS, value: ins }],
  name: [{ family, given: ['Camille'] }],
  gender: 'female',
  birthDate: '1980-05-17',
});

async function check(name, fn) {
  try {
    await fn();
    console.log(JSON.stringify({ check: name, ok: true }));
  } catch (error) {
    const detail = error.response ? { status: error.response.status, data: error.response.data } : {};
    console.log(JSON.stringify({ check: name, ok: false, error: String(error.stack || error), ...detail }));
    process.exit(1);
  }
}

const state = {};

await check('capabilityStatement', async () => {
  const cs = await client.capabilityStatement();
  assert.equal(cs.resourceType, 'CapabilityStatement');
  assert.equal(cs.fhirVersion, '4.0.1');
  const types = cs.rest[0].resource.map((r) => r.type);
  assert.ok(types.includes('Patient') && types.includes('DocumentReference'));
  assert.equal(header(cs, 'content-type'), 'application/fhir+json; charset=utf-8');
});

await check('smartAuthMetadata', async () => {
  const auth = await client.smartAuthMetadata();
  assert.equal(String(auth.tokenUrl), `${baseUrl}/auth/token`);
});

await check('create', async () => {
  state.ins = newIns();
  const created = await client.create({ resourceType: 'Patient', body: patient(state.ins) });
  assert.equal(created.resourceType, 'Patient');
  assert.ok(created.id);
  assert.equal(created.meta.versionId, '1');
  assert.equal(header(created, 'location'), `${baseUrl}/Patient/${created.id}/_history/1`);
  assert.equal(header(created, 'etag'), 'W/"1"');
  state.patient = created;
});

await check('read', async () => {
  const read = await client.read({ resourceType: 'Patient', id: state.patient.id });
  assert.deepEqual(read, state.patient);
  const version = await client.vread({ resourceType: 'Patient', id: state.patient.id, version: '1' });
  assert.equal(version.id, state.patient.id);
});

await check('update', async () => {
  const body = { ...state.patient, active: true };
  const updated = await client.update({ resourceType: 'Patient', id: state.patient.id, body });
  assert.equal(updated.meta.versionId, '2');
  assert.equal(updated.active, true);
  const conditional = await client.update({
    resourceType: 'Patient',
    searchParams: { identifier: `${INS}|${state.ins}` },
    body: { ...patient(state.ins), id: state.patient.id, gender: 'other' },
  });
  assert.equal(conditional.id, state.patient.id);
  assert.equal(conditional.meta.versionId, '3');
});

await check('patch', async () => {
  const patched = await client.patch({
    resourceType: 'Patient',
    id: state.patient.id,
    jsonPatch: [{ op: 'replace', path: '/gender', value: 'female' }],
  });
  assert.equal(patched.gender, 'female');
  assert.equal(patched.meta.versionId, '4');
});

await check('search', async () => {
  const bundle = await client.search({
    resourceType: 'Patient',
    searchParams: { identifier: `${INS}|${state.ins}` },
  });
  assert.equal(bundle.resourceType, 'Bundle');
  assert.equal(bundle.type, 'searchset');
  assert.equal(bundle.total, 1);
  assert.equal(bundle.entry[0].resource.id, state.patient.id);
  assert.equal(bundle.entry[0].fullUrl, `${baseUrl}/Patient/${state.patient.id}`);
  const posted = await client.search({
    resourceType: 'Patient',
    searchParams: { identifier: `${INS}|${state.ins}` },
    options: { postSearch: true },
  });
  assert.equal(posted.entry[0].resource.id, state.patient.id);
});

await check('transaction', async () => {
  const family = `Kit${randomUUID().slice(0, 8)}`;
  const patientUrl = `urn:uuid:${randomUUID()}`;
  const entries = [
    { fullUrl: patientUrl, resource: patient(newIns(), family), request: { method: 'POST', url: 'Patient' } },
  ];
  for (let i = 0; i < 5; i += 1) {
    entries.push({
      fullUrl: `urn:uuid:${randomUUID()}`,
      resource: {
        resourceType: 'DocumentReference',
        status: 'current',
        masterIdentifier: { system: 'urn:ietf:rfc:3986', value: `urn:oid:1.2.3.${Date.now()}.${i}` },
        type: { coding: [{ system: 'http://loinc.org', code: '11488-4' }] },
        subject: { reference: patientUrl },
        date: `2024-03-0${i + 1}T10:00:00Z`,
        content: [{ attachment: { contentType: 'text/plain', data: 'Qm9uam91cg==' } }],
      },
      request: { method: 'POST', url: 'DocumentReference' },
    });
  }
  const response = await client.transaction({
    body: { resourceType: 'Bundle', type: 'transaction', entry: entries },
  });
  assert.equal(response.resourceType, 'Bundle');
  assert.equal(response.type, 'transaction-response');
  assert.equal(response.entry.length, 6);
  for (const entry of response.entry) {
    assert.match(entry.response.status, /^201/);
    assert.match(entry.response.location, /^[A-Za-z]+\/[^/]+\/_history\/1$|^http/);
  }
  const patientId = response.entry[0].response.location.split('/').slice(-3)[0];
  // Paging through the documents with the client's nextPage (Bundle next links).
  let page = await client.search({
    resourceType: 'DocumentReference',
    searchParams: { patient: patientId, _count: 2, _sort: 'date' },
  });
  const seen = [];
  while (page) {
    for (const e of page.entry || []) seen.push(e.resource.date);
    page = await client.nextPage({ bundle: page });
  }
  assert.equal(seen.length, 5);
  assert.deepEqual(seen, [...seen].sort());
  assert.equal(seen[0].slice(0, 10), '2024-03-01');
});

await check('history and delete', async () => {
  const history = await client.history({ resourceType: 'Patient', id: state.patient.id });
  assert.equal(history.type, 'history');
  assert.equal(history.entry.length, 4);
  await client.delete({ resourceType: 'Patient', id: state.patient.id });
  await assert.rejects(
    client.read({ resourceType: 'Patient', id: state.patient.id }),
    (error) => error.response.status === 410,
  );
});
