/*  test_jose.c — bus_jose: RFC 8037's Ed25519 key (RFC 8032 test 1) has
    RFC 8037's thumbprint and signs RFC 8037 A.4's JWS byte for byte; a
    JWS verifies, and is refused when any part is touched, when its alg is
    not EdDSA, when the kid differs, or when it is not a JWS at all;
    base64url decoding refuses padding and foreign characters; a JWK with
    a private part is refused.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <sodium.h>

#include "bus_error.h"
#include "bus_jose.h"
#include "../support/test_service.h"

static const char *s_seed_hex = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
static const char *s_rfc_jws = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
    "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

static void
s_rfc_key (uint8_t pk [32], uint8_t sk [64])
{
    uint8_t seed [32];
    assert_int_equal (sodium_hex2bin (seed, 32, s_seed_hex, 64, NULL, NULL, NULL), 0);
    crypto_sign_seed_keypair (pk, sk, seed);
}

static void
test_rfc8037 (void **state)
{
    uint8_t pk [32], sk [64];
    s_rfc_key (pk, sk);
    char kid [BUS_JOSE_KID_LEN + 1];
    bus_jose_thumbprint (kid, pk);
    assert_string_equal (kid, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    json_t *header = json_object ();
    char *jws = NULL;
    const char *msg = "Example of Ed25519 signing";
    assert_int_equal (bus_jws_sign (header, msg, strlen (msg), sk, &jws), 0);
    assert_string_equal (jws, s_rfc_jws);
    json_t *payload = NULL;
    assert_int_equal (bus_jws_verify (s_rfc_jws, pk, NULL, &payload), BUS_EINVAL);  /* not JSON */
    assert_int_equal (bus_jws_verify (s_rfc_jws, pk, NULL, NULL), 0);
    json_t *jwk = bus_jose_jwk (pk);
    assert_string_equal (json_string_value (json_object_get (jwk, "x")),
                         "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
    uint8_t back [32];
    assert_int_equal (bus_jose_jwk_public (jwk, back), 0);
    assert_memory_equal (back, pk, 32);
    json_object_set_new (jwk, "d", json_string ("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"));
    assert_int_equal (bus_jose_jwk_public (jwk, back), BUS_EINVAL);
    json_object_del (jwk, "d");
    json_object_set_new (jwk, "crv", json_string ("X25519"));
    assert_int_equal (bus_jose_jwk_public (jwk, back), BUS_EINVAL);
    json_decref (jwk);
    json_decref (header);
    free (jws);
}

static void
test_round_trip_and_tampering (void **state)
{
    uint8_t pk [32], sk [64], pk2 [32], sk2 [64];
    s_rfc_key (pk, sk);
    crypto_sign_keypair (pk2, sk2);
    json_t *header = json_pack ("{s:s, s:s}", "typ", "at+jwt", "kid", "k1");
    char *jws = NULL;
    const char *body = "{\"a\":1}";
    assert_int_equal (bus_jws_sign (header, body, strlen (body), sk, &jws), 0);
    json_t *payload = NULL;
    assert_int_equal (bus_jws_verify (jws, pk, "k1", &payload), 0);
    assert_int_equal (json_integer_value (json_object_get (payload, "a")), 1);
    json_decref (payload);
    assert_int_equal (bus_jws_verify (jws, pk, "k2", NULL), BUS_ECRYPTO);
    assert_int_equal (bus_jws_verify (jws, pk2, NULL, NULL), BUS_ECRYPTO);
    /* every character touched in turn: never accepted */
    size_t n = strlen (jws);
    for (size_t i = 0; i < n; i++) {
        char *t = strdup (jws);
        t [i] = t [i] == 'A' ? 'B' : 'A';
        int rc = bus_jws_verify (t, pk, NULL, NULL);
        assert_true (rc == BUS_ECRYPTO || rc == BUS_EINVAL);
        free (t);
    }
    /* alg none / HS256 in a header we sign ourselves is still refused by check */
    bus_jws_t p;
    assert_int_equal (bus_jws_parse (jws, &p), 0);
    json_object_set_new (p.header, "alg", json_string ("none"));
    assert_int_equal (bus_jws_check (jws, &p, pk), BUS_ECRYPTO);
    bus_jws_clear (&p);
    const char *bad [] = { "", "a.b", "a.b.c.d", "e30.e30.", "e30=.e30.AAAA", "W10.e30." "AAAA", NULL };
    for (int i = 0; bad [i]; i++) {
        assert_int_equal (bus_jws_parse (bad [i], &p), BUS_EINVAL);
        assert_null (p.header);
    }
    assert_int_equal (bus_jws_parse (NULL, &p), BUS_EINVAL);
    json_decref (header);
    free (jws);
}

static void
test_b64url (void **state)
{
    char *t = bus_b64url_encode ("\xfb\xff", 2);
    assert_string_equal (t, "-_8");
    size_t n = 0;
    uint8_t *b = bus_b64url_decode (t, strlen (t), &n);
    assert_int_equal (n, 2);
    assert_memory_equal (b, "\xfb\xff", 2);
    free (b);
    free (t);
    assert_null (bus_b64url_decode ("-_8=", 4, &n));
    assert_null (bus_b64url_decode ("+/8", 3, &n));
    uint8_t out [2];
    assert_int_equal (bus_b64url_decode_fixed ("-_8", out, 2), 0);
    assert_int_equal (bus_b64url_decode_fixed ("-_8", out, 3), BUS_EINVAL);
    assert_int_equal (bus_b64url_decode_fixed (NULL, out, 2), BUS_EINVAL);
}

int
main (void)
{
    if (sodium_init () < 0)
        return 1;
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_rfc8037),
        cmocka_unit_test (test_round_trip_and_tampering),
        cmocka_unit_test (test_b64url),
    };
    return test_service_summary (sizeof tests / sizeof tests [0],
                                 cmocka_run_group_tests (tests, NULL, NULL));
}
