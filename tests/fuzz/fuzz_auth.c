/*
 * fuzz_auth.c - the handshake that proves the job's secret (transport/auth.h), as the first
 * bytes a stranger or a peer sends on any connection (bootstrap and TCP mesh).
 *
 * The first input byte picks the mode (low bit), the rest is played by the peer:
 *   mode 0 (stranger): bytes 1..48 are its challenge record, 49..96 its response record, as
 *     they came off the socket. Rules: a challenge is accepted exactly when its header is the
 *     documented one (magic, version, kind, zeros); a response made of input bytes is never
 *     accepted (it cannot know a MAC over our fresh nonce); our own challenge reflected back
 *     is refused.
 *   mode 1 (honest peer): the rest is the secret text, and byte 1's bit 1 says whether the
 *     other side holds it or a one-byte variation of it. A full exchange between the two
 *     (connector and acceptor) succeeds on both sides exactly when they hold the same secret
 *     and the secret is long enough to be accepted at all (DSM_AUTH_SECRET_MIN).
 * Every record goes to the decoder in a buffer of exactly its size (an overread is an ASan
 * report).
 */
#include "auth.h"
#include "fuzz.h"

static uint8_t *exact(const uint8_t *p, size_t n)
{
    uint8_t *b = malloc(n);
    FUZZ_CHECK(b, "out of memory");
    memcpy(b, p, n);
    return b;
}

static void stranger(const uint8_t *data, size_t size)
{
    uint8_t rec[2][DSM_AUTH_REC_SIZE] = {{0}};
    for (size_t i = 0; i < size && i < sizeof rec; i++)
        rec[i / DSM_AUTH_REC_SIZE][i % DSM_AUTH_REC_SIZE] = data[i];
    struct dsm_auth_key key;
    char why[300];
    FUZZ_CHECK(!dsm_auth_key_init(&key, "fuzz-secret-0123456789", 22, why, sizeof why), "%s", why);
    for (int role = DSM_AUTH_ACCEPTOR; role;
         role = role == DSM_AUTH_ACCEPTOR ? DSM_AUTH_CONNECTOR : 0) {
        struct dsm_auth a;
        uint8_t chal[DSM_AUTH_REC_SIZE], resp[DSM_AUTH_REC_SIZE];
        FUZZ_CHECK(!dsm_auth_start(&a, &key, role, chal), "dsm_auth_start failed");
        uint8_t *in = exact(rec[0], DSM_AUTH_REC_SIZE);
        why[0] = 0;
        int rc = dsm_auth_on_challenge(&a, in, resp, why, sizeof why);
        int valid = fuzz_le(rec[0], 4) == DSM_AUTH_MAGIC &&
                    fuzz_le(rec[0] + 4, 4) == DSM_AUTH_VERSION &&
                    fuzz_le(rec[0] + 8, 4) == DSM_AUTH_CHALLENGE && fuzz_le(rec[0] + 12, 4) == 0;
        FUZZ_CHECK((rc == 0) == valid, "challenge %s against the documented header",
                   rc ? "refused" : "accepted");
        FUZZ_CHECK(rc || fuzz_le(resp, 4) == DSM_AUTH_MAGIC, "response record without its magic");
        FUZZ_CHECK(!rc || why[0], "a refusal without a reason");
        free(in);
        in = exact(rec[1], DSM_AUTH_REC_SIZE);
        FUZZ_CHECK(dsm_auth_on_response(&a, in, why, sizeof why), "accepted a forged response");
        free(in);
        /* Our own challenge back: refused. */
        struct dsm_auth b;
        FUZZ_CHECK(!dsm_auth_start(&b, &key, role, chal), "dsm_auth_start failed");
        FUZZ_CHECK(dsm_auth_on_challenge(&b, chal, resp, why, sizeof why),
                   "accepted a reflected challenge");
    }
}

static void honest(const uint8_t *data, size_t size)
{
    int same = size == 0 || !(data[0] & 2);
    const char *secret = (const char *)(size ? data + 1 : data);
    size_t len = size ? size - 1 : 0;
    char *other = malloc(len + 1);
    FUZZ_CHECK(other, "out of memory");
    if (len) memcpy(other, secret, len);
    if (!same && len) other[len / 2] ^= 1;
    struct dsm_auth_key k1, k2;
    char why[300];
    int r1 = dsm_auth_key_init(&k1, secret, len, why, sizeof why);
    int r2 = dsm_auth_key_init(&k2, other, len, why, sizeof why);
    FUZZ_CHECK(r1 == r2, "the same length of secret accepted once and refused once");
    FUZZ_CHECK((r1 == 0) == (len == 0 || len >= DSM_AUTH_SECRET_MIN), "secret of %zu characters %s",
               len, r1 ? "refused" : "accepted");
    if (r1) {
        free(other);
        return;
    }
    struct dsm_auth c, a;
    uint8_t cc[DSM_AUTH_REC_SIZE], ac[DSM_AUTH_REC_SIZE], cr[DSM_AUTH_REC_SIZE],
        ar[DSM_AUTH_REC_SIZE];
    FUZZ_CHECK(!dsm_auth_start(&c, &k1, DSM_AUTH_CONNECTOR, cc) &&
                   !dsm_auth_start(&a, &k2, DSM_AUTH_ACCEPTOR, ac),
               "dsm_auth_start failed");
    FUZZ_CHECK(!dsm_auth_on_challenge(&c, ac, cr, why, sizeof why) &&
                   !dsm_auth_on_challenge(&a, cc, ar, why, sizeof why),
               "an honest challenge refused: %s", why);
    int ok_c = !dsm_auth_on_response(&c, ar, why, sizeof why);
    int ok_a = !dsm_auth_on_response(&a, cr, why, sizeof why);
    int equal = same || len == 0;
    FUZZ_CHECK(ok_c == equal && ok_a == equal, "secrets %s, connector %s, acceptor %s",
               equal ? "equal" : "differ", ok_c ? "accepted" : "refused",
               ok_a ? "accepted" : "refused");
    /* A response is bound to the role: the acceptor's own response, reflected to it, fails. */
    FUZZ_CHECK(dsm_auth_on_response(&a, ar, why, sizeof why),
               "accepted its own response reflected");
    free(other);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    if (data[0] & 1)
        honest(data + 1, size - 1);
    else
        stranger(data + 1, size - 1);
    return 0;
}
