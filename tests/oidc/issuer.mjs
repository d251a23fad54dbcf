// The OpenID provider for tests/it/oidc.rs: panva's certified `oidc-provider`,
// issuing JWT access tokens to service clients (client_credentials with
// resource indicators, so each token carries the resource server's `aud`).
//
// Two tenants share one key set, as multi-tenant identity providers do, so a
// token of tenant b is correctly signed but has the wrong issuer for tenant a.
// A small admin API beside the provider lets the test rotate keys, simulate
// an outage of the key endpoints, count key fetches, and mint tokens the
// provider would never issue (custom claims, forged signatures).
//
// Usage: node issuer.mjs NODE_MODULES_DIR
// Prints one JSON line {"base": "http://127.0.0.1:PORT"} when ready; exits
// when its standard input closes (so it never outlives the test).

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';

const modules = process.argv[2];
if (!modules) {
  console.error('usage: node issuer.mjs NODE_MODULES_DIR');
  process.exit(2);
}
// ESM ignores NODE_PATH: the provider is installed outside the clone.
const oidc = await import(pathToFileURL(path.join(modules, 'oidc-provider', 'lib', 'index.js')).href);
const Provider = oidc.default;
const { errors } = oidc;

const TENANTS = ['a', 'b'];
const AUDIENCE = 'opptak-review';

// Who each service client is; the claims land in its access tokens.
const CLIENTS = {
  'advisor-ada': { roles: ['advisor'], team: 'nord', name: 'Ada Advisor', employee_id: 'E1001' },
  'lead-lars': { roles: 'team-lead', team: 'nord', name: 'Lars Lead', employee_id: 'E1002' },
  'qa-olga': { roles: ['offline_access', 'qa', 'qa'], name: 'Olga QA', employee_id: 'E1003' },
  'ops-nils': { roles: ['operator'], team: 'drift', name: 'Nils Ops' },
  'mixed-mia': { roles: ['advisor', 'admin'], team: 'nord', name: 'Mia Mixed' },
  // The online bank: a service reading the customer archive, no role.
  nettbank: {},
};

// Resource indicator -> how its access tokens look.
const RESOURCES = {
  'https://opptak.test/api': { alg: 'RS256', audience: AUDIENCE },
  'https://opptak.test/api-es256': { alg: 'ES256', audience: AUDIENCE },
  'https://opptak.test/api-ps256': { alg: 'PS256', audience: AUDIENCE },
  'https://other.test/api': { alg: 'RS256', audience: 'other-service' },
};

let serial = 0;
function newKey(kind) {
  serial += 1;
  const pair = kind === 'rsa'
    ? crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })
    : crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...pair.privateKey.export({ format: 'jwk' }), kid: `${kind}-${serial}`, use: 'sig' };
}

let keys = [newKey('rsa'), newKey('ec')];
let providers = {};
let outage = 'off';
const stats = { jwks: 0, discovery: 0 };
let base = '';

function build() {
  const next = {};
  for (const tenant of TENANTS) {
    const provider = new Provider(`${base}/${tenant}`, {
      clients: Object.keys(CLIENTS).map((id) => ({
        client_id: id,
        client_secret: `secret-${id}`,
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
      })),
      jwks: { keys },
      features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        resourceIndicators: {
          enabled: true,
          getResourceServerInfo(ctx, indicator) {
            const rs = RESOURCES[indicator];
            if (!rs) throw new errors.InvalidTarget();
            return {
              scope: 'api',
              audience: rs.audience,
              accessTokenFormat: 'jwt',
              accessTokenTTL: 300,
              jwt: { sign: { alg: rs.alg } },
            };
          },
        },
      },
      ttl: { ClientCredentials: 300 },
      enabledJWA: { idTokenSigningAlgValues: ['RS256', 'PS256', 'ES256'] },
      extraTokenClaims(ctx, token) {
        return CLIENTS[token.clientId] ?? {};
      },
    });
    provider.on('server_error', (ctx, err) => console.error('provider error', err));
    next[tenant] = provider.callback();
  }
  providers = next;
}

function publicJwk(kid) {
  const k = keys.find((x) => x.kid === kid);
  if (!k) return null;
  return crypto.createPublicKey({ key: k, format: 'jwk' });
}

function b64u(buf) {
  return Buffer.from(buf).toString('base64url');
}

// Compact JWS over the given header and claims, signed as `with` says:
// "provider" (the provider's key named by header.kid), "attacker" (a fresh
// key of the same type: a forgery under the provider's kid), or
// "hmac-public-pem" (HMAC keyed with the provider's public key in PEM, the
// classic algorithm-confusion attack).
function sign({ header, claims, with: how }) {
  const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(claims))}`;
  const provider = keys.find((x) => x.kid === header.kid);
  let sig;
  if (how === 'hmac-public-pem') {
    const pem = publicJwk(header.kid).export({ type: 'spki', format: 'pem' });
    sig = crypto.createHmac('sha256', pem).update(input).digest();
  } else {
    let key;
    if (how === 'attacker') {
      key = crypto.createPrivateKey({ key: newKey(provider.kty === 'RSA' ? 'rsa' : 'ec'), format: 'jwk' });
    } else {
      key = crypto.createPrivateKey({ key: provider, format: 'jwk' });
    }
    const opts = { key };
    if (header.alg.startsWith('PS')) {
      opts.padding = crypto.constants.RSA_PKCS1_PSS_PADDING;
      opts.saltLength = 32;
    }
    if (header.alg.startsWith('ES')) opts.dsaEncoding = 'ieee-p1363';
    sig = crypto.sign('sha256', Buffer.from(input), opts);
  }
  return `${input}.${b64u(sig)}`;
}

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

async function readBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

async function admin(req, res, url) {
  switch (url.pathname) {
    case '/admin/state':
      return send(res, 200, {
        kids: keys.map((k) => ({ kid: k.kid, kty: k.kty })),
        stats,
        outage,
      });
    case '/admin/rotate': {
      // A new RSA signing key goes first (the provider signs with it); the
      // old ones stay published unless `drop` retires them.
      const drop = url.searchParams.get('drop') === '1';
      const fresh = newKey('rsa');
      keys = [fresh, ...keys.filter((k) => !(drop && k.kty === 'RSA'))];
      build();
      return send(res, 200, { kid: fresh.kid });
    }
    case '/admin/outage':
      outage = url.searchParams.get('mode') ?? 'off';
      return send(res, 200, { outage });
    case '/admin/sign':
      return send(res, 200, { token: sign(JSON.parse(await readBody(req))) });
    default:
      return send(res, 404, { error: 'no such admin route' });
  }
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, base);
  if (url.pathname.startsWith('/admin/')) {
    admin(req, res, url).catch((e) => send(res, 500, { error: String(e) }));
    return;
  }
  const isJwks = url.pathname.endsWith('/jwks');
  const isDiscovery = url.pathname.endsWith('/.well-known/openid-configuration');
  if (isJwks) stats.jwks += 1;
  if (isDiscovery) stats.discovery += 1;
  if ((isJwks || isDiscovery) && outage !== 'off') {
    if (outage === 'hang') return; // never answers: the client's timeout must fire
    if (outage === 'garbage') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('<html>maintenance</html>');
      return;
    }
    res.writeHead(503);
    res.end();
    return;
  }
  const tenant = TENANTS.find((t) => url.pathname === `/${t}` || url.pathname.startsWith(`/${t}/`));
  if (!tenant) {
    res.writeHead(404);
    res.end();
    return;
  }
  req.originalUrl = req.url;
  req.url = req.url.slice(tenant.length + 1) || '/';
  providers[tenant](req, res);
});

server.listen(0, '127.0.0.1', () => {
  base = `http://127.0.0.1:${server.address().port}`;
  build();
  process.stdout.write(`${JSON.stringify({ base })}\n`);
});

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
