// The page's files: vendored libraries at the pinned versions with their
// licences, and markup that a strict CSP accepts (no inline script or style).

import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const STATIC = join(ROOT, 'src/promptcast/static');
const pins = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).devDependencies;

describe('vendored libraries', () => {
  for (const [name, version] of Object.entries(pins)) {
    test(`${name} is vendored at ${version} with its licence`, () => {
      const dir = join(STATIC, 'vendor', name);
      const meta = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
      assert.equal(meta.name, name);
      assert.equal(meta.version, version);
      assert.match(version, /^\d+\.\d+\.\d+$/, 'pins are exact');
      assert.ok(readdirSync(dir).some((f) => f.startsWith('LICENSE')), 'licence file present');
    });
  }

  test('docs/page.md lists every vendored library at its version', () => {
    const doc = readFileSync(join(ROOT, 'docs/page.md'), 'utf8');
    for (const [name, version] of Object.entries(pins)) assert.ok(doc.includes(`${name}@${version}`) || doc.includes(`\`${name}\` | ${version}`) || doc.includes(`${name} ${version}`), name);
  });
});

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? walk(join(dir, d.name)) : [join(dir, d.name)]));
}

describe('CSP-friendly markup', () => {
  const html = readFileSync(join(STATIC, 'index.html'), 'utf8');

  test('no inline script, event handler or style', () => {
    for (const m of html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)) {
      assert.match(m[1], /\bsrc="\/static\//, 'scripts load from /static/');
      assert.equal(m[2].trim(), '', 'no inline script body');
    }
    assert.doesNotMatch(html, /\son[a-z]+\s*=/i, 'no inline event handlers');
    assert.doesNotMatch(html, /\sstyle\s*=/i, 'no style attributes');
    assert.doesNotMatch(html, /<style\b/i, 'no style elements');
    assert.doesNotMatch(html, /javascript:/i);
  });

  test('the original element ids are kept', () => {
    for (const id of ['promptInput', 'typeSelect', 'modelSelect', 'openingInput', 'startButton', 'stopButton', 'result']) {
      assert.match(html, new RegExp(`id="${id}"`), id);
    }
    assert.match(html, /<textarea[^>]*id="promptInput"/);
    assert.match(html, /<select[^>]*id="typeSelect"/);
    for (const v of ['optimize', 'expand', 'shorten']) assert.match(html, new RegExp(`<option value="${v}"`));
  });

  test('every local reference resolves to a file', () => {
    const refs = [...html.matchAll(/(?:src|href)="(\/static\/[^"]+)"/g)].map((m) => m[1]);
    assert.ok(refs.length >= 3);
    for (const ref of refs) assert.ok(existsSync(join(STATIC, ref.slice('/static/'.length))), ref);
  });

  test('every relative import of the page modules resolves', () => {
    const files = walk(STATIC).filter((f) => f.endsWith('.js') && !f.includes('/vendor/'));
    for (const file of files) {
      const src = readFileSync(file, 'utf8');
      for (const m of src.matchAll(/^\s*import\s[^'"]*['"](\.[^'"]+)['"]/gm)) {
        assert.ok(existsSync(join(file, '..', m[1])), `${file}: ${m[1]}`);
      }
      assert.doesNotMatch(src, /\beval\s*\(|new Function\s*\(|\.innerHTML\s*=|insertAdjacentHTML|document\.write/, file);
      assert.doesNotMatch(src, /setAttribute\(\s*['"]style['"]/, file);
    }
  });
});
