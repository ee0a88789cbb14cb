#!/usr/bin/env node
// Test OpenID Provider for jit-ssh integration tests. NOT for production use.
//
//   node tests/idp/idp.mjs --port 0 --keys-out /path/keys.json \
//        [--users tests/idp/users.json] [--id-token-ttl SECS]
//
// * Listens on 127.0.0.1:<port> (0 = random), plain HTTP. Issuer = http://127.0.0.1:<port>.
// * Fresh RS256 / ES256 / ES384 / EdDSA signing keys at every start; their PKCS#8 PEMs are written
//   to --keys-out (mode 0600) before the ready line, so tests can forge tokens.
// * When ready prints exactly one line to stdout: {"issuer":"http://127.0.0.1:PORT","port":PORT}
//   Everything else (logs, warnings) goes to stderr.
// * Shutdown: SIGTERM, SIGINT, or EOF on stdin (the parent test process is expected to hold a
//   pipe to our stdin; when it dies the pipe closes and we exit). Do not start it with stdin
//   connected to /dev/null: that is an immediate EOF and the IdP exits right away.
// * State (sessions, grants, codes, tokens) is in memory only.
// * Refresh tokens as oidc-provider ships: OIDC Core §11, offline_access is ignored unless the
//   authorization request says prompt=consent (the device flow has no prompt and keeps it).

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

// stdout is reserved for the ready line: route any library console output to stderr.
console.log = console.error;
console.info = console.error;
console.debug = console.error;

const HERE = path.dirname(fileURLToPath(import.meta.url));

function fail(msg) {
  process.stderr.write(`idp: ${msg}\n`);
  process.exit(2);
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      port: { type: 'string', default: '0' },
      'keys-out': { type: 'string' },
      users: { type: 'string', default: path.join(HERE, 'users.json') },
      'id-token-ttl': { type: 'string', default: '3600' },
    },
    strict: true,
  }));
} catch (e) {
  fail(e.message);
}

const port = Number(args.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`invalid --port ${args.port}`);
if (!args['keys-out']) fail('--keys-out is required');
const idTokenTtl = Number(args['id-token-ttl']);
if (!Number.isInteger(idTokenTtl) || idTokenTtl <= 0) fail(`invalid --id-token-ttl ${args['id-token-ttl']}`);

// ---------------------------------------------------------------------------------------------
// Users: { "<username>": { sub, name, email, email_verified, groups, hd, _claim_names,
// _claim_sources } }: hd as Google's ID tokens carry it, _claim_names/_claim_sources as Entra ID's
// groups overage (OIDC Core §5.6.2 distributed claims). A user whose preferred_username is null
// has none (Google's tokens carry none); otherwise it defaults to the user's key.
let users;
try {
  users = JSON.parse(fs.readFileSync(args.users, 'utf8'));
} catch (e) {
  fail(`cannot read users file ${args.users}: ${e.message}`);
}
const usersBySub = new Map();
for (const [username, u] of Object.entries(users)) {
  u.sub ||= `user-${username}`;
  if (u.preferred_username === undefined) u.preferred_username = username;
  usersBySub.set(u.sub, u);
}

// ---------------------------------------------------------------------------------------------
// Keys: fresh at every start, distinct kids.
function makeKey(alg, type, opts) {
  const { privateKey } = crypto.generateKeyPairSync(type, opts);
  const kid = `${alg.toLowerCase()}-${crypto.randomBytes(6).toString('hex')}`;
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
  const pem = privateKey.export({ format: 'pem', type: 'pkcs8' });
  return { kid, alg, jwk, pem };
}
const keys = [
  makeKey('RS256', 'rsa', { modulusLength: 2048 }),
  makeKey('ES256', 'ec', { namedCurve: 'P-256' }),
  makeKey('ES384', 'ec', { namedCurve: 'P-384' }),
  makeKey('EdDSA', 'ed25519', {}),
];

const keysOut = path.resolve(args['keys-out']);
fs.writeFileSync(
  keysOut,
  `${JSON.stringify({ keys: keys.map(({ kid, alg, pem }) => ({ kid, alg, private_pem: pem })) }, null, 2)}\n`,
  { mode: 0o600 },
);
fs.chmodSync(keysOut, 0o600); // in case the file already existed

// ---------------------------------------------------------------------------------------------
// Imported after console redirection so that import-time notices also go to stderr.
const { default: Provider } = await import('oidc-provider');

const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, '127.0.0.1', resolve);
});
const actualPort = server.address().port;
const issuer = `http://127.0.0.1:${actualPort}`;

const publicClient = (clientId, extra = {}) => ({
  client_id: clientId,
  application_type: 'native',
  token_endpoint_auth_method: 'none',
  // Native + http + loopback host: oidc-provider ignores the port when matching (RFC 8252 7.3).
  redirect_uris: ['http://127.0.0.1/callback'],
  grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
  response_types: ['code'],
  ...extra,
});

const SCOPE_CLAIMS = {
  openid: ['sub'],
  email: ['email', 'email_verified', 'hd'],
  profile: ['name', 'preferred_username'],
  groups: ['groups'],
};

const configuration = {
  clients: [
    publicClient('jit-ssh'),
    publicClient('jit-ssh-es256', { id_token_signed_response_alg: 'ES256' }),
    publicClient('jit-ssh-es384', { id_token_signed_response_alg: 'ES384' }),
    publicClient('jit-ssh-eddsa', { id_token_signed_response_alg: 'EdDSA' }),
    publicClient('other-app'),
    // Google's installed-app shape: a native client that must present its (not confidential)
    // client secret at the token endpoint.
    publicClient('jit-ssh-google', {
      client_secret: 'GOCSPX-public-installed-app-secret',
      token_endpoint_auth_method: 'client_secret_basic',
    }),
    // A client its administrators did not allow the refresh_token grant.
    publicClient('jit-ssh-no-refresh', { grant_types: ['authorization_code'] }),
  ],
  clientDefaults: { id_token_signed_response_alg: 'RS256' },
  jwks: { keys: keys.map((k) => k.jwk) },
  cookies: {
    keys: [crypto.randomBytes(32).toString('base64url')],
    // SameSite=None without Secure is refused by browsers; we are plain http, so use lax.
    long: { httpOnly: true, sameSite: 'lax' },
    short: { httpOnly: true, sameSite: 'lax' },
  },
  claims: SCOPE_CLAIMS,
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  // Put scope-derived claims (email, groups, ...) into the ID token itself, not only /me.
  conformIdTokenClaims: false,
  pkce: { methods: ['S256'], required: () => true },
  issueRefreshToken: async (ctx, client, code) => client.grantTypeAllowed('refresh_token')
    && code.scopes.has('offline_access'),
  enabledJWA: {
    idTokenSigningAlgValues: ['RS256', 'ES256', 'ES384', 'EdDSA'],
  },
  ttl: {
    IdToken: idTokenTtl,
    AccessToken: 3600,
    AuthorizationCode: 120,
    DeviceCode: 600,
    RefreshToken: 86400,
    Interaction: 3600,
    Session: 86400,
    Grant: 86400,
  },
  features: {
    devInteractions: { enabled: false },
    deviceFlow: {
      enabled: true,
      userCodeInputSource,
      userCodeConfirmSource,
      successSource,
    },
    revocation: { enabled: true },
    userinfo: { enabled: true },
  },
  interactions: { url: async (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, sub) {
    const u = usersBySub.get(sub);
    if (!u) return undefined;
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          name: u.name,
          preferred_username: u.preferred_username ?? undefined,
          email: u.email,
          email_verified: u.email_verified,
          groups: u.groups,
          hd: u.hd,
          _claim_names: u._claim_names,
          _claim_sources: u._claim_sources,
        };
      },
    };
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Error', `<pre>${esc(JSON.stringify(out, null, 2))}</pre>`);
  },
};

const provider = new Provider(issuer, configuration);

provider.on('server_error', (ctx, err) => process.stderr.write(`idp: server_error ${err.stack}\n`));

// ---------------------------------------------------------------------------------------------
// HTML helpers (no template engine).
function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  }[c]));
}
function page(title, body) {
  return `<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>${esc(title)}</title></head>`
    + `<body><h1>${esc(title)}</h1>\n${body}\n</body></html>\n`;
}

// Device flow pages: `form` is oidc-provider's own form (hidden xsrf etc.); we only add a button.
async function userCodeInputSource(ctx, form, out, err) {
  let msg = '<p>Enter the code displayed on your device</p>';
  if (err && (err.userCode || err.name === 'NoCodeError')) msg = '<p class="error">The code you entered is incorrect. Try again</p>';
  else if (err && err.name === 'AbortedError') msg = '<p class="error">The Sign-in request was interrupted</p>';
  else if (err) msg = '<p class="error">There was an error processing your request</p>';
  ctx.type = 'html';
  ctx.body = page('Device sign-in', `${msg}\n${form}\n<button type="submit" form="op.deviceInputForm">Continue</button>`);
}
async function userCodeConfirmSource(ctx, form, client, deviceInfo, userCode) {
  ctx.type = 'html';
  ctx.body = page('Confirm device', `<p>Client <strong>${esc(client.clientId)}</strong> shows code <code id="user_code">${esc(userCode)}</code></p>\n${form}\n`
    + '<button type="submit" form="op.deviceConfirmForm">Continue</button>\n'
    + '<button type="submit" form="op.deviceConfirmForm" value="yes" name="abort">Abort</button>');
}
async function successSource(ctx) {
  ctx.type = 'html';
  ctx.body = page('Sign-in success', `<p id="device-success">Sign-in with ${esc(ctx.oidc.client.clientId)} was successful, you can close this page.</p>`);
}

// ---------------------------------------------------------------------------------------------
// Interaction (login) routes, added through the provider's Koa app.
async function readForm(ctx, limit = 64 * 1024) {
  const type = (ctx.get('content-type') || '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') return null;
  let size = 0;
  const chunks = [];
  for await (const chunk of ctx.req) {
    size += chunk.length;
    if (size > limit) ctx.throw(413, 'body too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

const INTERACTION_RE = /^\/interaction\/([A-Za-z0-9_-]+)(\/login)?$/;

provider.use(async (ctx, next) => {
  const m = INTERACTION_RE.exec(ctx.path);
  if (!m) return next();
  const [, uid, login] = m;
  ctx.set('cache-control', 'no-store');

  let details;
  try {
    details = await provider.interactionDetails(ctx.req, ctx.res);
  } catch (e) {
    ctx.status = 400;
    ctx.type = 'text';
    ctx.body = `interaction not found or expired (${e.message})\n`;
    return undefined;
  }
  if (details.uid !== uid) {
    ctx.status = 400;
    ctx.type = 'text';
    ctx.body = 'interaction cookie does not match the URL\n';
    return undefined;
  }

  if (!login && ctx.method === 'GET') {
    const forms = Object.keys(users).map((name) => `<form method="post" action="/interaction/${esc(uid)}/login">`
      + `<input type="hidden" name="login" value="${esc(name)}"/>`
      + `<button type="submit">Sign in as ${esc(name)}</button></form>`).join('\n');
    ctx.type = 'html';
    ctx.body = page('Sign in', `<p>Client: <code>${esc(details.params.client_id)}</code>, prompt: <code>${esc(details.prompt.name)}</code></p>\n${forms}`);
    return undefined;
  }

  if (login && ctx.method === 'POST') {
    const form = await readForm(ctx);
    const username = form?.get('login');
    const user = username != null ? users[username] : undefined;
    if (!user) {
      ctx.status = 400;
      ctx.type = 'text';
      ctx.body = `unknown user ${JSON.stringify(username)}\n`;
      return undefined;
    }
    const accountId = user.sub;
    const { params, prompt: { details: pd } } = details;

    // Reuse the existing grant only if it belongs to the same account; otherwise start fresh.
    let grant;
    if (details.grantId && details.session?.accountId === accountId) {
      grant = await provider.Grant.find(details.grantId);
    }
    grant ||= new provider.Grant({ accountId, clientId: params.client_id });
    if (params.scope) grant.addOIDCScope(params.scope);
    if (pd.missingOIDCScope) grant.addOIDCScope(pd.missingOIDCScope.join(' '));
    if (pd.missingOIDCClaims) grant.addOIDCClaims(pd.missingOIDCClaims);
    if (params.claims) {
      try {
        const c = JSON.parse(params.claims);
        grant.addOIDCClaims([...Object.keys(c.id_token || {}), ...Object.keys(c.userinfo || {})]);
      } catch { /* ignore */ }
    }
    if (pd.missingResourceScopes) {
      for (const [indicator, scopes] of Object.entries(pd.missingResourceScopes)) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
    }
    const grantId = await grant.save();

    const redirectTo = await provider.interactionResult(ctx.req, ctx.res, {
      login: { accountId },
      consent: { grantId },
    }, { mergeWithLastSubmission: false });
    ctx.status = 303;
    ctx.redirect(redirectTo);
    return undefined;
  }

  ctx.status = 405;
  ctx.body = 'method not allowed\n';
  return undefined;
});

server.on('request', provider.callback());

// ---------------------------------------------------------------------------------------------
// Shutdown handling.
let shuttingDown = false;
function shutdown(code = 0) {
  if (shuttingDown) return;
  shuttingDown = true;
  process.stdin.destroy();
  server.close(() => process.exit(code));
  server.closeAllConnections?.();
  setTimeout(() => process.exit(code), 1000).unref();
}
process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => shutdown(0));
process.stdin.on('end', () => shutdown(0));
process.stdin.on('error', () => shutdown(0));
process.stdin.resume();

process.stdout.write(`${JSON.stringify({ issuer, port: actualPort })}\n`);
process.stderr.write(`idp: ready at ${issuer} (keys: ${keys.map((k) => `${k.alg}=${k.kid}`).join(', ')})\n`);
