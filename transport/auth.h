/*
 * auth.h - proof that both ends of a connection know the job's secret, before anything else
 * (job name, size, layout, addresses) crosses it.
 *
 * Used by the bootstrap (joiner <-> coordinator) and the TCP mesh; the RDMA mesh is set up
 * over an already authenticated TCP mesh. Pure functions over buffers (plus randomness for
 * the nonces), so that tests/unit and tests/fuzz drive them without sockets.
 *
 * Protocol, the same in both directions and symmetric in time (neither side waits for the
 * other to speak first):
 *   1. each side sends a CHALLENGE record carrying 32 fresh random bytes (its nonce);
 *   2. on receiving the peer's challenge, each side sends a RESPONSE record carrying
 *        HMAC-SHA-256(key, "ufdsm-auth-1" | role | peer's nonce | own nonce)
 *      where role says whether the responder connected ('C') or accepted ('A') the
 *      connection, so that a response can never be reflected back to the node that made it;
 *   3. each side checks the peer's response (constant-time compare) and only then sends
 *      anything about the job.
 * The key is SHA-256 of the secret text (DSM_SECRET or the contents of DSM_SECRET_FILE), so
 * any secret works and the key is always 32 bytes. Without a secret (loopback only, see
 * docs/security.md) the key is that of the empty text: the exchange still runs, proving
 * nothing, so that the code path is the same.
 *
 * Records are 48 bytes: magic "DSMA", format version, kind, 4 zeros, 32 bytes of body.
 * Crypto: libsodium (crypto_auth_hmacsha256, randombytes_buf, sodium_memcmp).
 */
#ifndef DSM_AUTH_H
#define DSM_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define DSM_AUTH_MAGIC     0x414d5344u /* "DSMA" */
#define DSM_AUTH_VERSION   1u
#define DSM_AUTH_REC_SIZE  48
#define DSM_AUTH_BODY_SIZE 32
/* Both records of one side: challenge then response. */
#define DSM_AUTH_SIZE (2 * DSM_AUTH_REC_SIZE)
/* Shortest secret accepted: 16 characters (dsmrun makes 64 hex digits). */
#define DSM_AUTH_SECRET_MIN 16
/* A connection that has not proven the secret by then is closed (bootstrap, TCP mesh). */
#define DSM_AUTH_DEADLINE_MS 2000

enum { DSM_AUTH_CHALLENGE = 1, DSM_AUTH_RESPONSE = 2 };
enum { DSM_AUTH_CONNECTOR = 'C', DSM_AUTH_ACCEPTOR = 'A' };

struct dsm_auth_key {
    uint8_t k[32];
    int secret; /* 0: no secret was given (the key of the empty text) */
};

/* One side of one connection's exchange. */
struct dsm_auth {
    const struct dsm_auth_key *key;
    int role; /* DSM_AUTH_CONNECTOR or DSM_AUTH_ACCEPTOR: how this side got the connection */
    uint8_t nonce[DSM_AUTH_BODY_SIZE];      /* ours */
    uint8_t peer_nonce[DSM_AUTH_BODY_SIZE]; /* theirs, once their challenge is in */
};

/* Key from secret text (len bytes; NULL or len 0: no secret). 0, or -1 with why (too short:
 * the minimum is DSM_AUTH_SECRET_MIN; libsodium failed to initialise). */
int dsm_auth_key_init(struct dsm_auth_key *key, const char *secret, size_t len, char *why,
                      size_t whylen);

/* Starts an exchange: a fresh nonce, and the challenge record to send in out[48]. 0, or -1 if
 * libsodium cannot be initialised. */
int dsm_auth_start(struct dsm_auth *a, const struct dsm_auth_key *key, int role,
                   uint8_t out[DSM_AUTH_REC_SIZE]);
/* The peer's challenge arrived in in[48]: checks it and writes our response into out[48].
 * 0, or -1 with why (not a ufdsm record, other format version, wrong kind, our own nonce
 * reflected back). */
int dsm_auth_on_challenge(struct dsm_auth *a, const uint8_t in[DSM_AUTH_REC_SIZE],
                          uint8_t out[DSM_AUTH_REC_SIZE], char *why, size_t whylen);
/* The peer's response arrived in in[48]: 0 if it proves the secret, else -1 with why. */
int dsm_auth_on_response(const struct dsm_auth *a, const uint8_t in[DSM_AUTH_REC_SIZE], char *why,
                         size_t whylen);

/* HMAC-SHA-256 with the job's key over what | data, for records that cannot take part in a
 * challenge-response (RDMA connection private data: one message each way). what: a label
 * naming the use, so that a MAC made for one use is never valid for another. */
void dsm_auth_hmac(const struct dsm_auth_key *key, const char *what, const uint8_t *data,
                   size_t len, uint8_t out[32]);
/* Constant-time comparison: 1 if equal. */
int dsm_auth_equal(const uint8_t *a, const uint8_t *b, size_t len);

/* Parses the secret as users give it: from the text of DSM_SECRET, or else the file named by
 * DSM_SECRET_FILE (refused if group or others may read it). Both NULL: no secret (*key has
 * secret == 0). 0, or -1 with a message naming the variable, the cause and the fix. */
int dsm_auth_key_from_env(struct dsm_auth_key *key, const char *secret, const char *file, char *err,
                          size_t errlen);

#endif /* DSM_AUTH_H */
