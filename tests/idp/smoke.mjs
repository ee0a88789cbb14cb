#!/usr/bin/env node
// Smoke test for tests/idp/idp.mjs. No dependencies: node's built-in fetch + crypto.
//   node tests/idp/smoke.mjs
// Starts the IdP on a random loopback port, drives the authorization code + PKCE flow,
// refresh, the device flow, and checks discovery/JWKS. Prints "N passed, N failed".

import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const STEP_TIMEOUT_MS = 10_000;
const TOTAL_TIMEOUT_MS = 120_000;
const REDIRECT_URI = 'http://127.0.0.1:45678/callback';

let passed = 0;
let failed = 0;
function check(name, cond, detail) {
  if (cond) {
    passed += 1;
    console.log(`ok   - ${name}`);
  } else {
    failed += 1;
    console.log(`FAIL - ${name}${detail !== undefined ? `: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}` : ''}`);
  }
  return cond;
}
function must(name, cond, detail) {
  if (!check(name, cond, detail)) throw new Error(`fatal: ${name}`);
}

// ---------------------------------------------------------------------------------------------
// Child process.
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'idp-smoke-'));
const keysOut = path.join(tmp, 'keys.json');
const child = spawn(process.execPath, [path.join(HERE, 'idp.mjs'), '--port', '0', '--keys-out', keysOut], {
  stdio: ['pipe', 'pipe', 'pipe'],
});
let childStderr = '';
child.stderr.on('data', (d) => { childStderr += d; });

function cleanup() {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  fs.rmSync(tmp, { recursive: true, force: true });
}
const watchdog = setTimeout(() => {
  console.log(`FAIL - overall timeout after ${TOTAL_TIMEOUT_MS}ms`);
  failed += 1;
  finish();
}, TOTAL_TIMEOUT_MS);

function finish() {
  clearTimeout(watchdog);
  cleanup();
  if (failed) process.stderr.write(`--- idp stderr ---\n${childStderr}\n`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

function readReadyLine() {
  return new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error('timeout waiting for ready line')), 15_000);
    child.stdout.on('data', (d) => {
      buf += d;
      const i = buf.indexOf('\n');
      if (i >= 0) {
        clearTimeout(t);
        resolve({ line: buf.slice(0, i), rest: () => buf.slice(i + 1) });
      }
    });
    child.once('exit', (code) => { clearTimeout(t); reject(new Error(`idp exited early (${code}): ${childStderr}`)); });
  });
}

// ---------------------------------------------------------------------------------------------
// Minimal path-aware cookie jar.
class Jar {
  constructor() { this.cookies = new Map(); }

  store(res) {
    const list = typeof res.headers.getSetCookie === 'function'
      ? res.headers.getSetCookie()
      : (res.headers.get('set-cookie') || '').split(/,(?=\s*[^;,=\s]+=)/).filter(Boolean);
    for (const sc of list) {
      const [nv, ...attrs] = sc.split(';').map((s) => s.trim());
      const eq = nv.indexOf('=');
      const name = nv.slice(0, eq);
      const value = nv.slice(eq + 1);
      let cpath = '/';
      let expired = value === '';
      for (const a of attrs) {
        const [k, v = ''] = a.split('=');
        if (k.toLowerCase() === 'path') cpath = v;
        if (k.toLowerCase() === 'expires' && Date.parse(v) < Date.now()) expired = true;
        if (k.toLowerCase() === 'max-age' && Number(v) <= 0) expired = true;
      }
      const key = `${name};${cpath}`;
      if (expired) this.cookies.delete(key);
      else this.cookies.set(key, { name, value, path: cpath });
    }
  }

  header(url) {
    const p = new URL(url).pathname;
    const out = [];
    for (const c of this.cookies.values()) {
      if (p === c.path || p.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`) || c.path === '/') {
        out.push(`${c.name}=${c.value}`);
      }
    }
    return out.join('; ');
  }

  names() { return [...this.cookies.values()].map((c) => `${c.name}(${c.path})`); }
}

async function req(jar, method, url, { form, headers = {} } = {}) {
  const h = { ...headers };
  const cookie = jar?.header(url);
  if (cookie) h.cookie = cookie;
  let body;
  if (form) {
    h['content-type'] = 'application/x-www-form-urlencoded';
    body = new URLSearchParams(form).toString();
  }
  const res = await fetch(url, {
    method, headers: h, body, redirect: 'manual', signal: AbortSignal.timeout(STEP_TIMEOUT_MS),
  });
  jar?.store(res);
  const text = await res.text();
  return {
    status: res.status, location: res.headers.get('location'), text, headers: res.headers,
  };
}

// ---------------------------------------------------------------------------------------------
// JWT helpers.
const b64u = (buf) => Buffer.from(buf).toString('base64url');
function decodeJwt(jwt) {
  const [h, p] = jwt.split('.');
  return { header: JSON.parse(Buffer.from(h, 'base64url')), payload: JSON.parse(Buffer.from(p, 'base64url')) };
}
function verifyJwt(jwt, jwks) {
  const [h, p, s] = jwt.split('.');
  const { kid, alg } = JSON.parse(Buffer.from(h, 'base64url'));
  const jwk = jwks.keys.find((k) => k.kid === kid);
  if (!jwk) return false;
  const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
  const data = Buffer.from(`${h}.${p}`);
  const sig = Buffer.from(s, 'base64url');
  switch (alg) {
    case 'RS256': return crypto.verify('sha256', data, key, sig);
    case 'ES256': return crypto.verify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, sig);
    case 'ES384': return crypto.verify('sha384', data, { key, dsaEncoding: 'ieee-p1363' }, sig);
    case 'EdDSA': return crypto.verify(null, data, key, sig);
    default: return false;
  }
}
const sameArray = (a, b) => JSON.stringify(a) === JSON.stringify(b);

// ---------------------------------------------------------------------------------------------
// Flows.
async function interactionLogin(jar, issuer, interactionUrl, username) {
  const page = await req(jar, 'GET', interactionUrl);
  must(`GET ${new URL(interactionUrl).pathname} renders login page`, page.status === 200 && page.text.includes(`value="${username}"`), page.status);
  const uid = new URL(interactionUrl).pathname.split('/')[2];
  const action = `/interaction/${uid}/login`;
  must('login form posts to /interaction/:uid/login', page.text.includes(`action="${action}"`));
  const login = await req(jar, 'POST', new URL(action, issuer).href, { form: { login: username } });
  must(`POST ${action} login=${username} -> 303`, login.status === 303 && login.location, { status: login.status, body: login.text });
  return new URL(login.location, issuer).href;
}

async function authCodeFlow(ctx, { clientId, username, scope = 'openid email profile groups offline_access', prompt = 'consent' }) {
  const { issuer, disco } = ctx;
  const jar = new Jar();
  const verifier = b64u(crypto.randomBytes(32));
  const challenge = b64u(crypto.createHash('sha256').update(verifier).digest());
  const state = b64u(crypto.randomBytes(12));
  const nonce = b64u(crypto.randomBytes(12));

  const authUrl = new URL(disco.authorization_endpoint);
  authUrl.search = new URLSearchParams({
    client_id: clientId,
    response_type: 'code',
    redirect_uri: REDIRECT_URI,
    scope,
    state,
    nonce,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    ...(prompt ? { prompt } : {}),
  }).toString();

  // 1. GET /auth -> 303 /interaction/:uid (sets _interaction + _interaction_resume cookies)
  const a1 = await req(jar, 'GET', authUrl.href);
  must(`[${clientId}] GET /auth -> 303 /interaction/:uid`, a1.status === 303 && /^\/interaction\/[^/]+$/.test(new URL(a1.location, issuer).pathname), { status: a1.status, location: a1.location, body: a1.text.slice(0, 300) });
  // 2+3. interaction page + login
  let next = await interactionLogin(jar, issuer, new URL(a1.location, issuer).href, username);
  // 4. GET /auth/:uid (resume) -> 303 redirect_uri?code=...&state=...
  let final;
  for (let i = 0; i < 5; i += 1) {
    if (next.startsWith(REDIRECT_URI)) { final = next; break; }
    const r = await req(jar, 'GET', next);
    must(`[${clientId}] GET ${new URL(next).pathname} -> redirect`, r.status >= 300 && r.status < 400 && r.location, { status: r.status, body: r.text.slice(0, 500) });
    next = new URL(r.location, next).href;
  }
  must(`[${clientId}] final redirect to ${REDIRECT_URI}`, !!final, next);
  const cb = new URL(final);
  check(`[${clientId}] callback state matches`, cb.searchParams.get('state') === state);
  check(`[${clientId}] callback iss matches`, cb.searchParams.get('iss') === null || cb.searchParams.get('iss') === issuer, cb.searchParams.get('iss'));
  const code = cb.searchParams.get('code');
  must(`[${clientId}] callback has code`, !!code, final);

  // 5. POST /token
  const tok = await req(null, 'POST', disco.token_endpoint, {
    form: {
      grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, client_id: clientId, code_verifier: verifier,
    },
  });
  must(`[${clientId}] POST /token (authorization_code) -> 200`, tok.status === 200, tok.text);
  const tokens = JSON.parse(tok.text);
  return { tokens, nonce, jar };
}

function checkIdToken(label, idToken, { issuer, jwks }, expect) {
  const { header, payload } = decodeJwt(idToken);
  check(`${label} signature verifies against JWKS (alg ${header.alg}, kid ${header.kid})`, verifyJwt(idToken, jwks));
  check(`${label} alg = ${expect.alg}`, header.alg === expect.alg, header.alg);
  check(`${label} iss`, payload.iss === issuer, payload.iss);
  check(`${label} aud = ${expect.aud}`, payload.aud === expect.aud || sameArray(payload.aud, [expect.aud]), payload.aud);
  check(`${label} sub`, payload.sub === expect.sub, payload.sub);
  if (expect.nonce !== undefined) check(`${label} nonce`, payload.nonce === expect.nonce, payload.nonce);
  check(`${label} preferred_username`, payload.preferred_username === expect.username, payload.preferred_username);
  check(`${label} email`, payload.email === `${expect.username}@example.com`, payload.email);
  check(`${label} email_verified = ${expect.emailVerified}`, payload.email_verified === expect.emailVerified, payload.email_verified);
  check(`${label} name`, typeof payload.name === 'string' && payload.name.length > 0, payload.name);
  check(`${label} groups`, sameArray(payload.groups, expect.groups), payload.groups);
  check(`${label} exp in future`, payload.exp > Date.now() / 1000, payload.exp);
  return payload;
}

async function main() {
  const { line } = await readReadyLine();
  const ready = JSON.parse(line);
  must('ready line has issuer and port', ready.issuer === `http://127.0.0.1:${ready.port}` && ready.port > 0, line);
  const { issuer } = ready;
  const keysFile = JSON.parse(fs.readFileSync(keysOut, 'utf8'));
  check('keys file mode 0600', (fs.statSync(keysOut).mode & 0o777) === 0o600);
  check('keys file has RS256, ES256, ES384, EdDSA PKCS#8 keys', sameArray(keysFile.keys.map((k) => k.alg), ['RS256', 'ES256', 'ES384', 'EdDSA'])
    && keysFile.keys.every((k) => k.private_pem.startsWith('-----BEGIN PRIVATE KEY-----')));

  // Discovery + JWKS
  const d = await req(null, 'GET', `${issuer}/.well-known/openid-configuration`);
  must('GET /.well-known/openid-configuration -> 200', d.status === 200, d.status);
  const disco = JSON.parse(d.text);
  check('discovery issuer', disco.issuer === issuer, disco.issuer);
  check('discovery device_authorization_endpoint', disco.device_authorization_endpoint === `${issuer}/device/auth`, disco.device_authorization_endpoint);
  check('discovery id_token algs', ['RS256', 'ES256', 'ES384', 'EdDSA'].every((a) => disco.id_token_signing_alg_values_supported.includes(a)), disco.id_token_signing_alg_values_supported);
  check('discovery scopes include groups', disco.scopes_supported.includes('groups'), disco.scopes_supported);
  console.log(`# endpoints: auth=${disco.authorization_endpoint} token=${disco.token_endpoint} device=${disco.device_authorization_endpoint} jwks=${disco.jwks_uri}`);
  const j = await req(null, 'GET', disco.jwks_uri);
  must('GET jwks -> 200', j.status === 200, j.status);
  const jwks = JSON.parse(j.text);
  console.log(`# jwks kids: ${jwks.keys.map((k) => `${k.kid} (${k.kty}/${k.alg})`).join(', ')}`);
  check('JWKS kids match keys file', sameArray(jwks.keys.map((k) => k.kid).sort(), keysFile.keys.map((k) => k.kid).sort()));
  check('JWKS has no private parts', jwks.keys.every((k) => !('d' in k)));
  const ctx = { issuer, disco, jwks };

  // Authorization code + PKCE for alice / jit-ssh
  const alice = await authCodeFlow(ctx, { clientId: 'jit-ssh', username: 'alice' });
  check('token response has refresh_token (offline_access)', typeof alice.tokens.refresh_token === 'string', Object.keys(alice.tokens));
  const idExpect = {
    alg: 'RS256', aud: 'jit-ssh', sub: 'user-alice', nonce: alice.nonce, username: 'alice', emailVerified: true, groups: ['eng'],
  };
  const first = checkIdToken('alice id_token', alice.tokens.id_token, ctx, idExpect);
  check('alice id_token kid is the RS256 key', decodeJwt(alice.tokens.id_token).header.kid === keysFile.keys[0].kid);

  // Refresh
  const rt = await req(null, 'POST', disco.token_endpoint, {
    form: { grant_type: 'refresh_token', refresh_token: alice.tokens.refresh_token, client_id: 'jit-ssh' },
  });
  must('POST /token (refresh_token) -> 200', rt.status === 200, rt.text);
  const refreshed = JSON.parse(rt.text);
  check('refresh response has id_token', typeof refreshed.id_token === 'string');
  const second = checkIdToken('refreshed id_token', refreshed.id_token, ctx, idExpect);
  check('refreshed id_token is new (different iat/jti or token)', refreshed.id_token !== alice.tokens.id_token && second.auth_time === first.auth_time);
  check('refresh token rotated', typeof refreshed.refresh_token === 'string' && refreshed.refresh_token !== alice.tokens.refresh_token);

  // Userinfo also has the claims
  const ui = await req(null, 'GET', disco.userinfo_endpoint, { headers: { authorization: `Bearer ${alice.tokens.access_token}` } });
  check('userinfo -> 200 with groups', ui.status === 200 && sameArray(JSON.parse(ui.text).groups, ['eng']), ui.text);

  // ES256 / ES384 / EdDSA clients
  const carol = await authCodeFlow(ctx, { clientId: 'jit-ssh-es256', username: 'carol' });
  checkIdToken('carol/es256 id_token', carol.tokens.id_token, ctx, {
    alg: 'ES256', aud: 'jit-ssh-es256', sub: 'user-carol', nonce: carol.nonce, username: 'carol', emailVerified: true, groups: ['sre-leads'],
  });
  const erin = await authCodeFlow(ctx, { clientId: 'jit-ssh-es384', username: 'erin' });
  checkIdToken('erin/es384 id_token', erin.tokens.id_token, ctx, {
    alg: 'ES384', aud: 'jit-ssh-es384', sub: 'user-erin', nonce: erin.nonce, username: 'erin', emailVerified: true, groups: ['eng', 'sre', 'oncall'],
  });
  const dave = await authCodeFlow(ctx, { clientId: 'jit-ssh-eddsa', username: 'dave' });
  checkIdToken('dave/eddsa id_token', dave.tokens.id_token, ctx, {
    alg: 'EdDSA', aud: 'jit-ssh-eddsa', sub: 'user-dave', nonce: dave.nonce, username: 'dave', emailVerified: false, groups: ['eng'],
  });
  const other = await authCodeFlow(ctx, { clientId: 'other-app', username: 'alice', scope: 'openid email profile groups' });
  check('other-app id_token aud = other-app', decodeJwt(other.tokens.id_token).payload.aud === 'other-app');
  check('no refresh_token without offline_access', other.tokens.refresh_token === undefined);
  // As shipped (OIDC Core §11): offline_access without prompt=consent is ignored.
  const noPrompt = await authCodeFlow(ctx, { clientId: 'jit-ssh', username: 'bob', prompt: null });
  check('no refresh_token for offline_access without prompt=consent', noPrompt.tokens.refresh_token === undefined);
  const noGrant = await authCodeFlow(ctx, { clientId: 'jit-ssh-no-refresh', username: 'bob' });
  check('no refresh_token for a client without the refresh_token grant', noGrant.tokens.refresh_token === undefined);

  // Negative: PKCE is required, unknown user rejected
  {
    const jar = new Jar();
    const u = new URL(disco.authorization_endpoint);
    u.search = new URLSearchParams({
      client_id: 'jit-ssh', response_type: 'code', redirect_uri: REDIRECT_URI, scope: 'openid', state: 's', nonce: 'n',
    }).toString();
    const r = await req(jar, 'GET', u.href);
    const loc = r.location ? new URL(r.location, issuer) : null;
    check('auth without PKCE -> error redirect', r.status === 303 && loc?.href.startsWith(REDIRECT_URI) && loc.searchParams.get('error') === 'invalid_request', { status: r.status, location: r.location });
    u.searchParams.set('code_challenge', b64u(crypto.createHash('sha256').update('x'.repeat(43)).digest()));
    u.searchParams.set('code_challenge_method', 'S256');
    const r2 = await req(jar, 'GET', u.href);
    const uid = new URL(r2.location, issuer).pathname.split('/')[2];
    const bad = await req(jar, 'POST', `${issuer}/interaction/${uid}/login`, { form: { login: 'nobody' } });
    check('unknown user -> 400', bad.status === 400, bad.status);
    const wrongRedirect = new URL(u.href);
    wrongRedirect.searchParams.set('redirect_uri', 'http://127.0.0.1:45678/other');
    const r3 = await req(new Jar(), 'GET', wrongRedirect.href);
    check('unregistered redirect path rejected (no redirect)', r3.status === 400, r3.status);
  }

  // Device flow for bob
  const da = await req(null, 'POST', disco.device_authorization_endpoint, {
    form: { client_id: 'jit-ssh', scope: 'openid email profile groups offline_access' },
  });
  must('POST /device/auth -> 200', da.status === 200, da.text);
  const dev = JSON.parse(da.text);
  console.log(`# device: user_code=${dev.user_code} verification_uri=${dev.verification_uri} interval=${dev.interval}`);
  check('device response fields', dev.device_code && dev.user_code && dev.verification_uri === `${issuer}/device` && dev.verification_uri_complete, dev);

  const poll = () => req(null, 'POST', disco.token_endpoint, {
    form: { grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: dev.device_code, client_id: 'jit-ssh' },
  });
  const p0 = await poll();
  check('device poll before approval -> authorization_pending', p0.status === 400 && JSON.parse(p0.text).error === 'authorization_pending', p0.text);

  const jar = new Jar();
  const v1 = await req(jar, 'GET', dev.verification_uri);
  must('GET /device -> 200 input form', v1.status === 200 && v1.text.includes('name="user_code"'), v1.status);
  const xsrf = /name="xsrf" value="([^"]+)"/.exec(v1.text)?.[1];
  must('device form has xsrf', !!xsrf);
  const v2 = await req(jar, 'POST', dev.verification_uri, { form: { xsrf, user_code: dev.user_code } });
  must('POST /device (xsrf,user_code) -> 200 confirm page', v2.status === 200 && v2.text.includes('name="confirm"'), { status: v2.status, body: v2.text.slice(0, 300) });
  const xsrf2 = /name="xsrf" value="([^"]+)"/.exec(v2.text)?.[1];
  const v3 = await req(jar, 'POST', dev.verification_uri, { form: { xsrf: xsrf2, user_code: dev.user_code, confirm: 'yes' } });
  must('POST /device (xsrf,user_code,confirm=yes) -> 303 /interaction/:uid', v3.status === 303 && /^\/interaction\//.test(new URL(v3.location, issuer).pathname), { status: v3.status, location: v3.location, body: v3.text.slice(0, 300) });
  const resume = await interactionLogin(jar, issuer, new URL(v3.location, issuer).href, 'bob');
  check('device login redirects to /device/:uid', /^\/device\/[^/]+$/.test(new URL(resume).pathname), resume);
  const v4 = await req(jar, 'GET', resume);
  check('GET /device/:uid -> 200 success page', v4.status === 200 && v4.text.includes('device-success'), { status: v4.status, body: v4.text.slice(0, 300) });

  let devTokens;
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    const p = await poll();
    if (p.status === 200) { devTokens = JSON.parse(p.text); break; }
    const err = JSON.parse(p.text).error;
    if (err !== 'authorization_pending' && err !== 'slow_down') { check('device poll', false, p.text); break; }
    await new Promise((r) => setTimeout(r, (dev.interval || 1) * 1000));
  }
  must('device token obtained', !!devTokens);
  checkIdToken('bob device id_token', devTokens.id_token, ctx, {
    alg: 'RS256', aud: 'jit-ssh', sub: 'user-bob', username: 'bob', emailVerified: true, groups: ['eng', 'sre'],
  });
  check('device flow refresh_token (offline_access)', typeof devTokens.refresh_token === 'string');
  const again = await poll();
  check('device_code cannot be reused', again.status === 400, again.text);
}

main().then(finish, (e) => {
  if (!String(e.message).startsWith('fatal:')) {
    failed += 1;
    console.log(`FAIL - exception: ${e.stack}`);
  }
  finish();
});
