import {
  KeyObject,
  X509Certificate,
  createPrivateKey,
  createPublicKey,
  hkdfSync,
} from 'node:crypto';
import type { AppConfig } from './config';

/** The asymmetric algorithms access tokens can be signed with, by the private key's type. */
type JwtKeyPairAlgorithm = 'ES256' | 'ES384' | 'RS256';

/** An access-token key pair (JWT_PRIVATE_KEY / JWT_PUBLIC_KEY), checked at boot. */
export interface JwtKeyPair {
  algorithm: JwtKeyPairAlgorithm;
  /** PEM (PKCS#8 or SEC1/PKCS#1), as given with `\n` escapes unfolded. */
  privateKeyPem: string;
  /** PEM (SPKI), the private key's own public half. */
  publicKeyPem: string;
}

/** RSA keys shorter than this are refused (NIST SP 800-57: 2048 bits at least). */
const RSA_MIN_BITS = 2048;

const EC_CURVES: Record<string, JwtKeyPairAlgorithm> = { prime256v1: 'ES256', secp384r1: 'ES384' };

/**
 * A PEM from an environment variable: a one-line value with `\n` escapes (how .env files,
 * compose and most secret stores carry it) is unfolded; surrounding spaces are dropped.
 */
function unfold(value: string): string {
  return value.replace(/\\n/g, '\n').trim();
}

/** The key's algorithm, or what is wrong with it. */
function algorithmOf(key: KeyObject): string {
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec') {
    return (
      EC_CURVES[details.namedCurve ?? ''] ??
      `an EC key on ${details.namedCurve ?? 'an unknown curve'} (use P-256 or P-384)`
    );
  }
  if (key.asymmetricKeyType === 'rsa') {
    const bits = details.modulusLength ?? 0;
    return bits >= RSA_MIN_BITS ? 'RS256' : `an RSA key of ${bits} bits (at least ${RSA_MIN_BITS})`;
  }
  return `key type ${key.asymmetricKeyType ?? 'unknown'} (use EC P-256, P-384 or RSA)`;
}

const isSupported = (algorithm: string): algorithm is JwtKeyPairAlgorithm =>
  algorithm === 'ES256' || algorithm === 'ES384' || algorithm === 'RS256';

const spki = (key: KeyObject) => key.export({ type: 'spki', format: 'der' });

/**
 * JWT_PRIVATE_KEY and JWT_PUBLIC_KEY, the alternative to JWT_SECRET that API.md allows ("or key
 * pair variables"): tokens are signed with the private key (ES256 for EC P-256, ES384 for P-384,
 * RS256 for RSA ≥ 2048 bits) and verified with the public one, so other services can check them
 * without being able to sign. Both or neither; never together with JWT_SECRET (which of the two
 * would sign would be a guess); the public key must be the private key's own (a mismatch would
 * boot and refuse every token it issued). Problems name the variable, never quote its value.
 */
export function parseJwtKeyPair(env: Record<string, string>): {
  keyPair?: JwtKeyPair;
  problems: string[];
} {
  const privateValue = env.JWT_PRIVATE_KEY;
  const publicValue = env.JWT_PUBLIC_KEY;
  if (privateValue === undefined && publicValue === undefined) return { problems: [] };
  if (privateValue === undefined || publicValue === undefined) {
    const missing = privateValue === undefined ? 'JWT_PRIVATE_KEY' : 'JWT_PUBLIC_KEY';
    return {
      problems: [
        `${missing}: required with ${missing === 'JWT_PRIVATE_KEY' ? 'JWT_PUBLIC_KEY' : 'JWT_PRIVATE_KEY'} (the two halves of one key pair)`,
      ],
    };
  }
  const problems: string[] = [];
  if (env.JWT_SECRET !== undefined) {
    problems.push(
      'JWT_SECRET: set together with JWT_PRIVATE_KEY/JWT_PUBLIC_KEY; set one or the other',
    );
  }
  let privateKey: KeyObject | null = null;
  let publicKey: KeyObject | null = null;
  try {
    privateKey = createPrivateKey(unfold(privateValue));
  } catch {
    problems.push(
      /ENCRYPTED/.test(privateValue)
        ? 'JWT_PRIVATE_KEY: an encrypted key (no passphrase is read: give it unencrypted, from a secret store)'
        : 'JWT_PRIVATE_KEY: not a PEM private key',
    );
  }
  try {
    // createPublicKey() would take a private key too (and derive its public half): a private key
    // pasted here would sit in a variable meant to be shared
    if (unfold(publicValue).includes('PRIVATE KEY')) throw new Error('a private key');
    publicKey = createPublicKey(unfold(publicValue));
  } catch {
    problems.push('JWT_PUBLIC_KEY: not a PEM public key');
  }
  if (!privateKey || !publicKey) return { problems };
  const algorithm = algorithmOf(privateKey);
  if (!isSupported(algorithm)) {
    problems.push(`JWT_PRIVATE_KEY: ${algorithm}`);
    return { problems };
  }
  if (!spki(createPublicKey(privateKey)).equals(spki(publicKey))) {
    problems.push('JWT_PUBLIC_KEY: not the public half of JWT_PRIVATE_KEY');
  }
  if (problems.length) return { problems };
  return {
    problems,
    keyPair: {
      algorithm,
      privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
      publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }) as string,
    },
  };
}

/**
 * JWT_VERIFY_ONLY_SECRET / JWT_VERIFY_ONLY_PUBLIC_KEY: a key access tokens are accepted under
 * besides the signing one, never signed with — the next key before a rotation's swap, the
 * previous one after it (README, "Rotating the JWT key").
 */
export type JwtVerifyOnlyKey =
  { algorithm: 'HS256'; secret: string } | { algorithm: JwtKeyPairAlgorithm; publicKeyPem: string };

/** A PEM block's armour: never in a random secret. */
const PEM_ARMOUR = /-----BEGIN [A-Z0-9 ]+-----/;

/**
 * The problem of an HS256 secret (JWT_SECRET, JWT_VERIFY_ONLY_SECRET) that is a key (looksLikeKey):
 * a public key taken as an HMAC secret lets anyone holding it sign tokens — for JWT_SECRET too
 * (configuration review: an SPKI body or a JWK there was taken). Null for a secret.
 */
export function keyGivenAsSecret(name: string, value: string, instead: string): string | null {
  return looksLikeKey(value)
    ? `${name}: a key (PEM, JWK or base64 DER), not an HS256 secret (a public key taken as an HMAC secret lets anyone holding it sign tokens); give a public key as ${instead}`
    : null;
}

/**
 * Whether `value` is a key in any form a secret store may hold one — a PEM block, any JSON object
 * (a JWK, a JWKS), or the base64, base64url or hex of a DER key or certificate, the PEM's body on one line, whitespace
 * allowed: a public key taken as an HMAC secret lets anyone holding it sign tokens, and only the
 * armour was refused (diff review: an SPKI body or a JWK in JWT_VERIFY_ONLY_SECRET minted admin
 * tokens).
 */
function looksLikeKey(value: string): boolean {
  const text = unfold(value);
  if (PEM_ARMOUR.test(text)) return true;
  try {
    // any JSON object or array: a JWK, a JWKS (`{"keys": […]}`), a key in a wrapper of its own
    const json: unknown = JSON.parse(text);
    if (typeof json === 'object' && json !== null) return true;
  } catch {
    // not JSON
  }
  const body = text.replace(/\s+/g, '');
  const encodings: BufferEncoding[] = [];
  if (/^(?:[0-9a-fA-F]{2})+$/.test(body)) encodings.push('hex'); // `xxd -p` of a DER key
  if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(body))
    encodings.push(body.includes('-') || body.includes('_') ? 'base64url' : 'base64');
  return encodings.some((encoding) => isDerKey(Buffer.from(body, encoding)));
}

/** Whether `der` is a key, or a certificate holding one, in DER (SPKI, PKCS#1, PKCS#8, SEC1, X.509). */
function isDerKey(der: Buffer): boolean {
  const forms: (() => unknown)[] = [
    () => createPublicKey({ key: der, format: 'der', type: 'spki' }),
    () => createPublicKey({ key: der, format: 'der', type: 'pkcs1' }),
    () => createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }),
    () => createPrivateKey({ key: der, format: 'der', type: 'pkcs1' }),
    () => createPrivateKey({ key: der, format: 'der', type: 'sec1' }),
    () => new X509Certificate(der),
  ];
  return forms.some((parse) => {
    try {
      parse();
      return true;
    } catch {
      return false;
    }
  });
}

/**
 * The verify-only key (JwtVerifyOnlyKey), checked as the signing key of its kind is: a secret
 * as JWT_SECRET is (length, different characters: the schema; strength outside development:
 * config.ts), a public key as JWT_PUBLIC_KEY is (a PEM public key, not a private one; EC P-256,
 * P-384 or RSA ≥ 2048 bits). One of the two at most; never the signing key itself (`current`:
 * the effective JWT_SECRET, or the pair). Either kind goes with either kind of signing key (a
 * move from JWT_SECRET to a key pair, or back): every key is tried with its own algorithm only
 * (accessTokenKeyRing), so a public key is never taken as an HMAC secret — except if it were
 * given as one, which is why a key in JWT_VERIFY_ONLY_SECRET (looksLikeKey) is refused (anyone holding the
 * public key would sign tokens accepted here). Problems name the variable, never quote a value.
 */
export function parseJwtVerifyOnlyKey(
  env: Record<string, string>,
  current: { secret?: string; keyPair?: JwtKeyPair },
): { key?: JwtVerifyOnlyKey; problems: string[] } {
  const secret = env.JWT_VERIFY_ONLY_SECRET;
  const publicValue = env.JWT_VERIFY_ONLY_PUBLIC_KEY;
  if (secret !== undefined && publicValue !== undefined) {
    return {
      problems: [
        'JWT_VERIFY_ONLY_SECRET: set together with JWT_VERIFY_ONLY_PUBLIC_KEY; one key is accepted besides the signing one, set one or the other',
      ],
    };
  }
  if (secret !== undefined) {
    const given = keyGivenAsSecret('JWT_VERIFY_ONLY_SECRET', secret, 'JWT_VERIFY_ONLY_PUBLIC_KEY');
    if (given) return { problems: [given] };
    if (secret === current.secret) {
      return {
        problems: [
          'JWT_VERIFY_ONLY_SECRET: the same value as JWT_SECRET, which signs (and is accepted) already; give the next or the previous key',
        ],
      };
    }
    return { key: { algorithm: 'HS256', secret }, problems: [] };
  }
  if (publicValue === undefined) return { problems: [] };
  let publicKey: KeyObject;
  try {
    // (a private key would be taken too, its public half derived: refused, as for JWT_PUBLIC_KEY)
    if (unfold(publicValue).includes('PRIVATE KEY')) throw new Error('a private key');
    publicKey = createPublicKey(unfold(publicValue));
  } catch {
    return { problems: ['JWT_VERIFY_ONLY_PUBLIC_KEY: not a PEM public key'] };
  }
  const algorithm = algorithmOf(publicKey);
  if (!isSupported(algorithm)) {
    return { problems: [`JWT_VERIFY_ONLY_PUBLIC_KEY: ${algorithm}`] };
  }
  if (
    current.keyPair &&
    spki(createPublicKey(current.keyPair.publicKeyPem)).equals(spki(publicKey))
  ) {
    return {
      problems: [
        'JWT_VERIFY_ONLY_PUBLIC_KEY: the same key as JWT_PUBLIC_KEY, which is accepted already; give the next or the previous key',
      ],
    };
  }
  return {
    key: { algorithm, publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }) as string },
    problems: [],
  };
}

/**
 * The server secret sessions' recorded clients are an HMAC under (SessionIssuer.clientKeyOf):
 * JWT_SECRET itself (as before key pairs existed: the records stay valid), or with a key pair a
 * key derived from the private key (HKDF-SHA-256) — the public key, which others hold, would let
 * them reverse the records. The listings' cursor keys derive from it too (CursorCodec).
 */
export function sessionClientSecret(config: Pick<AppConfig, 'jwt'>): Buffer | string {
  const pair = config.jwt.keyPair;
  if (!pair) return config.jwt.secret ?? '';
  // the private value itself (JWK `d`), not an encoding of the key: PKCS#8 with or without the
  // optional public key, or SEC1, are one key and must give one HMAC key on every instance
  const { d } = createPrivateKey(pair.privateKeyPem).export({ format: 'jwk' });
  if (!d) throw new Error('the access-token private key has no private value');
  return Buffer.from(
    hkdfSync('sha256', Buffer.from(d, 'base64url'), Buffer.alloc(0), 'shop session-client key', 32),
  );
}

/**
 * Every server secret whose HMACs and seals are still accepted (device tokens, recorded clients,
 * cursors): the signing key's (sessionClientSecret) first — the one new values are made under —
 * then a verify-only JWT_VERIFY_ONLY_SECRET's, itself as JWT_SECRET's is (what it made while it
 * signed, or will make once it does, stays valid through a rotation's roll). A verify-only public
 * key has none: its private key's derived secret cannot be had from it (README, "Rotating the JWT
 * key": with key pairs, a rotation refuses the other key's cursors and device tokens once).
 */
export function acceptedSessionClientSecrets(config: Pick<AppConfig, 'jwt'>): (Buffer | string)[] {
  const verifyOnly = config.jwt.verifyOnly;
  return verifyOnly && 'secret' in verifyOnly
    ? [sessionClientSecret(config), verifyOnly.secret]
    : [sessionClientSecret(config)];
}
