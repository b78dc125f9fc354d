/*
 * auth.c - the secret-proving exchange of auth.h, over libsodium.
 *
 * Why libsodium: a small, well-kept library packaged by Debian (libsodium-dev), whose API
 * offers exactly the three primitives needed here (HMAC-SHA-256, a CSPRNG that never
 * fails once initialised, constant-time comparison) without the configuration surface of
 * OpenSSL.
 */
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net.h"

static const char label[] = "ufdsm-auth-1";

static int sodium_ready(void)
{
    /* sodium_init is idempotent and thread-safe: 0 first time, 1 afterwards. */
    return sodium_init() < 0 ? -1 : 0;
}

int dsm_auth_key_init(struct dsm_auth_key *key, const char *secret, size_t len, char *why,
                      size_t whylen)
{
    memset(key, 0, sizeof *key);
    if (sodium_ready()) {
        snprintf(why, whylen, "libsodium cannot be initialised (no randomness source?)");
        return -1;
    }
    if (!secret) len = 0;
    if (len && len < DSM_AUTH_SECRET_MIN) {
        snprintf(why, whylen,
                 "the secret has %zu characters, at least %d are needed — use e.g. 64 hex "
                 "digits from 'od -An -tx1 -N32 /dev/urandom | tr -d \" \\n\"'",
                 len, DSM_AUTH_SECRET_MIN);
        return -1;
    }
    crypto_hash_sha256(key->k, (const unsigned char *)(len ? secret : ""), len);
    key->secret = len > 0;
    return 0;
}

static void put_rec(uint8_t *out, uint32_t kind, const uint8_t *body)
{
    memset(out, 0, DSM_AUTH_REC_SIZE);
    dsm_net_put32(out, DSM_AUTH_MAGIC);
    dsm_net_put32(out + 4, DSM_AUTH_VERSION);
    dsm_net_put32(out + 8, kind);
    memcpy(out + 16, body, DSM_AUTH_BODY_SIZE);
}

static int check_rec(const uint8_t *in, uint32_t kind, char *why, size_t whylen)
{
    uint32_t magic = dsm_net_get32(in), version = dsm_net_get32(in + 4);
    uint32_t k = dsm_net_get32(in + 8);
    if (magic != DSM_AUTH_MAGIC) {
        snprintf(why, whylen, "data that is not from ufdsm (magic 0x%08x, expected 0x%08x)", magic,
                 DSM_AUTH_MAGIC);
        return -1;
    }
    if (version != DSM_AUTH_VERSION) {
        snprintf(why, whylen,
                 "authentication format %u, expected %u — run the same ufdsm build everywhere",
                 version, DSM_AUTH_VERSION);
        return -1;
    }
    if (k != kind || dsm_net_get32(in + 12) != 0) {
        snprintf(why, whylen, "an authentication record of kind %u where %u belongs", k, kind);
        return -1;
    }
    return 0;
}

void dsm_auth_hmac(const struct dsm_auth_key *key, const char *what, const uint8_t *data,
                   size_t len, uint8_t out[32])
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key->k, sizeof key->k);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)what, strlen(what));
    crypto_auth_hmacsha256_update(&st, data, len);
    crypto_auth_hmacsha256_final(&st, out);
}

int dsm_auth_equal(const uint8_t *a, const uint8_t *b, size_t len)
{
    return sodium_memcmp(a, b, len) == 0;
}

/* The MAC the side with role `role` sends, answering challenge `chal` with its own `own`. */
static void mac(const struct dsm_auth_key *key, int role, const uint8_t *chal, const uint8_t *own,
                uint8_t out[crypto_auth_hmacsha256_BYTES])
{
    crypto_auth_hmacsha256_state st;
    uint8_t r = (uint8_t)role;
    crypto_auth_hmacsha256_init(&st, key->k, sizeof key->k);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)label, sizeof label - 1);
    crypto_auth_hmacsha256_update(&st, &r, 1);
    crypto_auth_hmacsha256_update(&st, chal, DSM_AUTH_BODY_SIZE);
    crypto_auth_hmacsha256_update(&st, own, DSM_AUTH_BODY_SIZE);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}

int dsm_auth_start(struct dsm_auth *a, const struct dsm_auth_key *key, int role,
                   uint8_t out[DSM_AUTH_REC_SIZE])
{
    memset(a, 0, sizeof *a);
    if (sodium_ready()) return -1;
    a->key = key;
    a->role = role;
    randombytes_buf(a->nonce, sizeof a->nonce);
    put_rec(out, DSM_AUTH_CHALLENGE, a->nonce);
    return 0;
}

int dsm_auth_on_challenge(struct dsm_auth *a, const uint8_t in[DSM_AUTH_REC_SIZE],
                          uint8_t out[DSM_AUTH_REC_SIZE], char *why, size_t whylen)
{
    if (check_rec(in, DSM_AUTH_CHALLENGE, why, whylen)) return -1;
    memcpy(a->peer_nonce, in + 16, DSM_AUTH_BODY_SIZE);
    /* Our own nonce coming back means someone is relaying our challenge to us. */
    if (!sodium_memcmp(a->peer_nonce, a->nonce, DSM_AUTH_BODY_SIZE)) {
        snprintf(why, whylen, "our own challenge back (a reflection attempt)");
        return -1;
    }
    uint8_t m[crypto_auth_hmacsha256_BYTES];
    mac(a->key, a->role, a->peer_nonce, a->nonce, m);
    put_rec(out, DSM_AUTH_RESPONSE, m);
    return 0;
}

int dsm_auth_on_response(const struct dsm_auth *a, const uint8_t in[DSM_AUTH_REC_SIZE], char *why,
                         size_t whylen)
{
    if (check_rec(in, DSM_AUTH_RESPONSE, why, whylen)) return -1;
    uint8_t want[crypto_auth_hmacsha256_BYTES];
    int peer_role = a->role == DSM_AUTH_CONNECTOR ? DSM_AUTH_ACCEPTOR : DSM_AUTH_CONNECTOR;
    mac(a->key, peer_role, a->nonce, a->peer_nonce, want);
    if (sodium_memcmp(want, in + 16, sizeof want)) {
        snprintf(why, whylen,
                 "no proof of this job's secret (its DSM_SECRET / DSM_SECRET_FILE differs from "
                 "this node's, or only one of the two has one)");
        return -1;
    }
    return 0;
}

int dsm_auth_key_from_env(struct dsm_auth_key *key, const char *secret, const char *file, char *err,
                          size_t errlen)
{
    char why[256];
    if (secret && *secret) {
        if (dsm_auth_key_init(key, secret, strlen(secret), why, sizeof why)) {
            snprintf(err, errlen, "DSM_SECRET is not usable: %s", why);
            return -1;
        }
        return 0;
    }
    if (!file || !*file) return dsm_auth_key_init(key, NULL, 0, err, errlen);
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "DSM_SECRET_FILE=%s cannot be opened: %s", file, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "DSM_SECRET_FILE=%s is not a regular file", file);
        close(fd);
        return -1;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        snprintf(err, errlen,
                 "DSM_SECRET_FILE=%s may be read or changed by other users (mode %04o) — "
                 "run 'chmod 600 %s'",
                 file, (unsigned)(st.st_mode & 07777), file);
        close(fd);
        return -1;
    }
    char buf[1024];
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    if (n < 0) {
        snprintf(err, errlen, "DSM_SECRET_FILE=%s cannot be read: %s", file, strerror(errno));
        return -1;
    }
    if ((size_t)n == sizeof buf) {
        snprintf(err, errlen, "DSM_SECRET_FILE=%s is longer than %zu bytes: is it the right file?",
                 file, sizeof buf - 1);
        return -1;
    }
    /* A trailing newline (echo, editors) is not part of the secret. */
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) n--;
    if (n == 0) {
        snprintf(err, errlen, "DSM_SECRET_FILE=%s is empty: put the job's secret in it", file);
        return -1;
    }
    int rc = dsm_auth_key_init(key, buf, (size_t)n, why, sizeof why);
    sodium_memzero(buf, sizeof buf);
    if (rc) snprintf(err, errlen, "DSM_SECRET_FILE=%s is not usable: %s", file, why);
    return rc;
}
