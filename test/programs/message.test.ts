// PROGRAM/STORE message checks against the real message fixture, and the mapping of
// a message to a VM launch.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parseProgramMessage, parseStoreMessage, touchedHashes, MessageError, vmLaunch, processLaunch } from '../../src/programs/aleph/index.js';
import { MIN_REQUEST_SECONDS, toProgram } from '../../src/programs/aleph/launch.js';
import { ROOT } from '../helpers/paths.js';

const raw = JSON.parse(readFileSync(path.join(ROOT, 'test/fixtures/aleph-api/program_message_from_aleph.json'), 'utf8')) as Record<string, unknown>;

/** The fixture with a real item hash: sha256 of its item_content. */
function rehashed(itemContent = raw.item_content as string): Record<string, unknown> {
  return { ...raw, item_content: itemContent, item_hash: createHash('sha256').update(itemContent).digest('hex') };
}

describe('Aleph messages', () => {
  it('the fixture as published (a fake item hash) is refused: item_content must hash to item_hash', () => {
    assert.throws(() => parseProgramMessage(raw, raw.item_hash as string), (e: unknown) => e instanceof MessageError && /does not hash to the item_hash/.test(e.message));
  });

  it('reads the fixture: code, runtime, data, volumes, resources, from item_content', () => {
    const message = rehashed();
    const spec = parseProgramMessage(message, message.item_hash as string);
    assert.deepEqual(spec.code, { ref: '7eb2eca2378ea8855336ed76c8b26219f1cb90234d04441de9cf8cb1c649d003', useLatest: false, encoding: 'squashfs', entrypoint: 'main:app', interface: 'asgi', args: [] });
    assert.equal(spec.runtime.ref, '5f31b0706f59404fad3d0bff97ef89ddf24da4761608ea0646329362c662ba51');
    assert.deepEqual(spec.data, { ref: '7eb2eca2378ea8855336ed76c8b26219f1cb90234d04441de9cf8cb1c649d003', useLatest: false, encoding: 'zip', mount: '/data' });
    assert.deepEqual(spec.volumes, [
      { kind: 'immutable', mount: '/opt/venv', ref: '5f31b0706f59404fad3d0bff97ef89ddf24da4761608ea0646329362c662ba51', useLatest: false },
      // item_content, not the API's decoded `content` (which says /var/lib/example): the hash covers item_content.
      { kind: 'persistent', mount: '/var/lib/sqlite', name: 'database', persistence: 'host', sizeMib: 5 },
    ]);
    assert.deepEqual(spec.resources, { vcpus: 1, memoryMib: 128, seconds: 30 });
    assert.equal(spec.internet, true);
    assert.equal(spec.sender, '0x9319Ad3B7A8E0eE24f2E639c40D8eD124C5520Ba');
  });

  it('names the bad field of a malformed message', () => {
    const content = JSON.parse(raw.item_content as string) as Record<string, any>;
    const cases: Array<[(c: Record<string, any>) => void, RegExp]> = [
      [(c) => { c.type = 'vm-instance'; }, /content\.type: expected "vm-function"/],
      [(c) => { c.code.ref = 'nope'; }, /content\.code\.ref: expected a 64-hex item hash/],
      [(c) => { c.code.encoding = 'tar'; }, /content\.code\.encoding: unsupported encoding "tar"/],
      [(c) => { c.resources.memory = -1; }, /content\.resources\.memory: -1 is out of range/],
      [(c) => { c.volumes[0].mount = '/opt/../etc'; }, /content\.volumes\[0\]\.mount: .* is not a normalized absolute mount point/],
      [(c) => { c.variables = { 'BAD-NAME': 'x' }; }, /content\.variables\.BAD-NAME: not a valid variable name/],
      [(c) => { c.volumes = [{ persistence: 'host', name: 'v', mount: '/a', size_mib: 1 }, { persistence: 'host', name: 'v', mount: '/b', size_mib: 1 }]; }, /content\.volumes\[1\]\.name: "v" is used by another persistent volume/],
      [(c) => { delete c.runtime; }, /content\.runtime: expected an object/],
      [(c) => { c.code.interface = 'asgi'; c.code.entrypoint = 'main:app; rm -rf'; }, /content\.code\.entrypoint: must be "module:attribute" for an ASGI program/],
    ];
    for (const [edit, expected] of cases) {
      const copy = structuredClone(content);
      edit(copy);
      const message = rehashed(JSON.stringify(copy));
      assert.throws(() => parseProgramMessage(message, message.item_hash as string), (e: unknown) => e instanceof MessageError && expected.test(e.message), String(expected));
    }
    const message = rehashed();
    assert.throws(() => parseProgramMessage(message, 'a'.repeat(64)), /item_hash: does not match the requested hash/);
    assert.throws(() => parseStoreMessage(message, message.item_hash as string), /type: expected STORE, got PROGRAM/);
  });

  it('reads on.persistent: false in the fixture, true when the message says so, and the program carries it', () => {
    const fixture = rehashed();
    const plain = parseProgramMessage(fixture, fixture.item_hash as string);
    assert.equal(plain.persistent, false);
    assert.equal(toProgram(plain, vmLaunch(plain, { code: '/c', runtime: '', volumes: [] }), 'x').persistent, undefined);
    const content = JSON.parse(raw.item_content as string) as Record<string, any>;
    content.on = { ...content.on, persistent: true };
    const message = rehashed(JSON.stringify(content));
    const spec = parseProgramMessage(message, message.item_hash as string);
    assert.equal(spec.persistent, true);
    assert.equal(toProgram(spec, vmLaunch(spec, { code: '/c', runtime: '', volumes: [] }), 'x').persistent, true);
    content.on.persistent = 'yes';
    const bad = rehashed(JSON.stringify(content));
    assert.throws(() => parseProgramMessage(bad, bad.item_hash as string), /content\.on\.persistent/);
  });

  it('maps the fixture to a VM launch with what a VM driver needs', () => {
    const message = rehashed();
    const spec = parseProgramMessage(message, message.item_hash as string);
    const volumes = [
      { mount: '/data', kind: 'data' as const, source: '/cache/data', sizeMib: 0, readOnly: true },
      { mount: '/opt/venv', kind: 'immutable' as const, source: '/cache/venv/blob', sizeMib: 0, readOnly: true },
    ];
    const launch = vmLaunch(spec, { code: '/cache/code/blob', runtime: '/cache/runtime/blob', volumes });
    assert.equal(launch.kind, 'vm');
    assert.equal(launch.code, '/cache/code/blob');
    assert.equal(launch.entrypoint, '');
    assert.equal(launch.internet, true);
    assert.deepEqual(launch.aleph, { interface: 'asgi', asgiApp: 'main:app', args: [], runtime: '/cache/runtime/blob', volumes });
    // The process driver serves ASGI programs in the sandbox with our server bound at /opt/aleph-guest.
    const sandboxed = processLaunch(spec, { code: '/c', runtime: '', volumes: [] }, { bwrap: '/usr/bin/bwrap', socat: '/usr/bin/socat', systemBinds: [] }, '/pkg/guest');
    assert.deepEqual(sandboxed.asgi, { app: 'main:app', appDir: '/opt/code', guestDir: '/opt/aleph-guest' });
    assert.deepEqual(sandboxed.command, [], 'the driver runs the interpreter');
    assert.equal(sandboxed.sandbox?.ignoreTerm, true);
    const args = sandboxed.sandbox!.options.join(' ');
    assert.match(args, /^--die-with-parent --unshare-all .*--ro-bind \/c \/opt\/code --ro-bind \/pkg\/guest \/opt\/aleph-guest.* --chdir \/opt\/code$/);
    assert.doesNotMatch(args, /--share-net/, 'a sandboxed program never shares the host network');
  });

  it('resources.seconds is the request timeout, raised to the floor a cold ASGI start needs', () => {
    const message = rehashed();
    const spec = parseProgramMessage(message, message.item_hash as string);
    const launch = vmLaunch(spec, { code: '/c', runtime: '/r', volumes: [] });
    assert.equal(toProgram(spec, launch, 'x').requestTimeoutMs, 30_000); // the fixture's 30 s
    assert.equal(toProgram({ ...spec, resources: { ...spec.resources, seconds: 1 } }, launch, 'x').requestTimeoutMs, MIN_REQUEST_SECONDS * 1000);
    assert.equal(MIN_REQUEST_SECONDS, 10);
  });

  it('tells which hashes a stream message touches', () => {
    const ref = 'b'.repeat(64);
    assert.deepEqual(touchedHashes({ type: 'STORE', item_hash: 'c'.repeat(64), content: { ref, item_hash: 'd'.repeat(64) } })?.touches, [ref]);
    assert.deepEqual(touchedHashes({ type: 'FORGET', item_hash: 'e'.repeat(64), content: { hashes: [ref, 'not a hash'] } })?.touches, [ref]);
    assert.equal(touchedHashes('garbage'), undefined);
  });
});
