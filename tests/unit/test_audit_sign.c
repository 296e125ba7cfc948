/*  test_audit_sign.c — the auditor's keys and signatures: the RFC 8037
    Ed25519 key (RFC 8032 test 1) gives RFC 8037's thumbprint as kid and
    verifies RFC 8037's JWS; our JWS verify and refuse when touched; tree
    heads sign and verify; HMAC-SHA256 matches RFC 4231; key files are
    made 0600 on first load, kept across loads, refused when others can
    read them or their size is wrong.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>
#include <sodium.h>

#include "proto_canon.h"
#include "audit_sign.h"
#include "bus_error.h"
#include "../support/test_service.h"

/*  RFC 8032 7.1 test 1 = RFC 8037 appendix A.1. */
static const char *s_seed_hex = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
static const char *s_pk_hex = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

static audit_keys_t *
s_rfc_keys (const uint8_t hmac [32])
{
    uint8_t seed [32];
    assert_int_equal (sodium_hex2bin (seed, 32, s_seed_hex, 64, NULL, NULL, NULL), 0);
    uint8_t zero [32] = { 0 };
    audit_keys_t *keys = NULL;
    assert_int_equal (audit_keys_from_seed (&keys, seed, hmac ? hmac : zero), 0);
    return keys;
}

static void
test_rfc8037_key_and_jws (void **state)
{
    audit_keys_t *keys = s_rfc_keys (NULL);
    char hex [65];
    sodium_bin2hex (hex, sizeof hex, audit_keys_public (keys), 32);
    assert_string_equal (hex, s_pk_hex);
    /* RFC 8037 A.3: the thumbprint */
    assert_string_equal (audit_keys_kid (keys), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    json_t *jwks = audit_keys_jwks (keys);
    json_t *k = json_array_get (json_object_get (jwks, "keys"), 0);
    assert_string_equal (json_string_value (json_object_get (k, "x")), "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
    assert_string_equal (json_string_value (json_object_get (k, "kty")), "OKP");
    assert_string_equal (json_string_value (json_object_get (k, "crv")), "Ed25519");
    assert_string_equal (json_string_value (json_object_get (k, "kid")), audit_keys_kid (keys));
    json_decref (jwks);
    /* RFC 8037 A.4: its JWS verifies (payload not JSON: not read) */
    const char *jws = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
                      "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
    assert_int_equal (audit_jws_verify (jws, audit_keys_public (keys), NULL, NULL), 0);
    json_t *payload = NULL;
    assert_int_equal (audit_jws_verify (jws, audit_keys_public (keys), NULL, &payload), BUS_EINVAL);
    /* it has no kid: refused when one is required */
    assert_int_equal (audit_jws_verify (jws, audit_keys_public (keys), audit_keys_kid (keys), NULL), BUS_ECRYPTO);
    audit_keys_destroy (&keys);
    assert_null (keys);
}

static void
test_jws_round_trip_and_tampering (void **state)
{
    audit_keys_t *keys = s_rfc_keys (NULL);
    json_t *payload = json_pack ("{s:s, s:i, s:[s]}", "run", "01ABC", "steps", 3, "who", "user:carol");
    char *jws = NULL;
    assert_int_equal (audit_jws_sign (keys, payload, &jws), 0);
    json_t *back = NULL;
    assert_int_equal (audit_jws_verify (jws, audit_keys_public (keys), audit_keys_kid (keys), &back), 0);
    assert_true (json_equal (back, payload));
    json_decref (back);
    /* the header names alg and kid */
    char *dot = strchr (jws, '.');
    uint8_t header [256];
    size_t hlen;
    assert_int_equal (sodium_base642bin (header, sizeof header, jws, (size_t) (dot - jws), NULL, &hlen, NULL,
                                         sodium_base64_VARIANT_URLSAFE_NO_PADDING), 0);
    char want [128];
    snprintf (want, sizeof want, "{\"alg\":\"EdDSA\",\"kid\":\"%s\",\"typ\":\"JWT\"}", audit_keys_kid (keys));
    assert_int_equal (hlen, strlen (want));
    assert_memory_equal (header, want, hlen);
    /* one character changed anywhere: refused */
    size_t n = strlen (jws);
    for (size_t i = 0; i < n; i += 7) {
        if (jws [i] == '.')
            continue;
        char saved = jws [i];
        jws [i] = saved == 'A' ? 'B' : 'A';
        assert_int_not_equal (audit_jws_verify (jws, audit_keys_public (keys), NULL, NULL), 0);
        jws [i] = saved;
    }
    /* another key, another kid, garbage */
    uint8_t other [32], hmac [32] = { 0 };
    randombytes_buf (other, sizeof other);
    audit_keys_t *keys2 = NULL;
    assert_int_equal (audit_keys_from_seed (&keys2, other, hmac), 0);
    assert_int_equal (audit_jws_verify (jws, audit_keys_public (keys2), NULL, NULL), BUS_ECRYPTO);
    assert_int_equal (audit_jws_verify (jws, audit_keys_public (keys), "other", NULL), BUS_ECRYPTO);
    assert_int_equal (audit_jws_verify ("a.b", audit_keys_public (keys), NULL, NULL), BUS_EINVAL);
    assert_int_equal (audit_jws_verify ("a.b.c.d", audit_keys_public (keys), NULL, NULL), BUS_EINVAL);
    assert_int_equal (audit_jws_verify (NULL, audit_keys_public (keys), NULL, NULL), BUS_EINVAL);
    /* a payload that is not an object is not signed */
    char *none = NULL;
    json_t *list = json_array ();
    assert_int_equal (audit_jws_sign (keys, list, &none), BUS_EINVAL);
    json_decref (list);
    free (jws);
    json_decref (payload);
    audit_keys_destroy (&keys);
    audit_keys_destroy (&keys2);
}

static void
test_tree_head (void **state)
{
    audit_keys_t *keys = s_rfc_keys (NULL);
    audit_head_t head = { .size = 8, .time = 1700000000000000 };
    assert_int_equal (audit_hash_from_hex (head.root, "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"), 0);
    assert_int_equal (audit_head_sign (keys, &head), 0);
    char text [AUDIT_HEAD_TEXT_MAX];
    size_t n = audit_head_text (&head, text, sizeof text);
    char want [256];
    snprintf (want, sizeof want, "sanctum-auditor/%s\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\ntime 1700000000000000\n",
              audit_keys_kid (keys));
    assert_int_equal (n, strlen (want));
    assert_string_equal (text, want);
    assert_int_equal (crypto_sign_verify_detached (head.signature, (uint8_t *) text, n, audit_keys_public (keys)), 0);
    assert_int_equal (audit_head_verify (&head, audit_keys_public (keys)), 0);
    head.size = 9;
    assert_int_equal (audit_head_verify (&head, audit_keys_public (keys)), BUS_ECRYPTO);
    head.size = 8;
    head.root [0] ^= 1;
    assert_int_equal (audit_head_verify (&head, audit_keys_public (keys)), BUS_ECRYPTO);
    head.root [0] ^= 1;
    head.time++;
    assert_int_equal (audit_head_verify (&head, audit_keys_public (keys)), BUS_ECRYPTO);
    audit_keys_destroy (&keys);
}

/*  RFC 4231 test case 2 (key "Jefe": HMAC pads a short key with zeros, so
    the same key padded to 32 bytes gives the same tag). */
static void
test_hmac (void **state)
{
    uint8_t key [32] = { 'J', 'e', 'f', 'e' };
    audit_keys_t *keys = s_rfc_keys (key);
    char hex [65];
    const char *data = "what do ya want for nothing?";
    audit_hmac_hex (keys, hex, data, strlen (data));
    assert_string_equal (hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    char redacted [12 + 64 + 1];
    audit_hmac_redact (keys, redacted, data);
    assert_string_equal (redacted, "hmac-sha256:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    /* over the canonical payload: key order does not matter */
    json_t *a = json_loads ("{\"b\":1,\"a\":2}", 0, NULL), *b = json_loads ("{\"a\":2,\"b\":1}", 0, NULL);
    char ha [65], hb [65], hc [65];
    assert_int_equal (audit_hmac_payload (keys, a, ha), 0);
    assert_int_equal (audit_hmac_payload (keys, b, hb), 0);
    audit_hmac_hex (keys, hc, "{\"a\":2,\"b\":1}", 13);
    assert_string_equal (ha, hb);
    assert_string_equal (ha, hc);
    json_decref (a);
    json_decref (b);
    audit_keys_destroy (&keys);
}

/*  A test's own marking: echo.seen's "from" and "extra" are sensitive. */
static bool
s_test_sensitive (const char *type, const char *field)
{
    return streq (type, "echo.seen") && (streq (field, "from") || streq (field, "extra"));
}

/*  Sensitive fields become "hmac-sha256:<hex>" (a string's bytes; other
    values' canonical JSON), the rest stays; the catalogue marks none yet,
    so proto_field_sensitive leaves a real event alone. */
static void
test_redact_fields (void **state)
{
    uint8_t key [32] = { 'J', 'e', 'f', 'e' };
    audit_keys_t *keys = s_rfc_keys (key);
    json_t *body = json_pack ("{s:s, s:s, s:{s:i, s:i}}", "request", "r1",
                              "from", "what do ya want for nothing?", "extra", "b", 1, "a", 2);
    assert_int_equal (audit_redact_fields (keys, "echo.seen", body, s_test_sensitive), 2);
    assert_string_equal (json_string_value (json_object_get (body, "from")),
                         "hmac-sha256:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    char hex [65], tag [12 + 65];
    audit_hmac_hex (keys, hex, "{\"a\":2,\"b\":1}", 13);
    snprintf (tag, sizeof tag, "hmac-sha256:%s", hex);
    assert_string_equal (json_string_value (json_object_get (body, "extra")), tag);
    assert_string_equal (json_string_value (json_object_get (body, "request")), "r1");
    /* another type: nothing marked */
    json_t *other = json_pack ("{s:s}", "from", "x");
    assert_int_equal (audit_redact_fields (keys, "service.started", other, s_test_sensitive), 0);
    assert_string_equal (json_string_value (json_object_get (other, "from")), "x");
    /* the catalogue: no field marked yet; unknown types and NULL are not */
    assert_int_equal (audit_redact_fields (keys, "echo.seen", other, proto_field_sensitive), 0);
    assert_false (proto_field_sensitive ("echo", "data"));
    assert_false (proto_field_sensitive ("no.such.type", "x"));
    assert_false (proto_field_sensitive (NULL, NULL));
    /* not an object: left alone */
    json_t *list = json_pack ("[s]", "x");
    assert_int_equal (audit_redact_fields (keys, "echo.seen", list, s_test_sensitive), 0);
    json_decref (list);
    json_decref (other);
    json_decref (body);
    audit_keys_destroy (&keys);
}

static void
test_key_files (void **state)
{
    char dir [64], keys_dir [128], path [192];
    assert_int_equal (test_service_tmpdir (dir, sizeof dir, "test_audit_sign"), 0);
    snprintf (keys_dir, sizeof keys_dir, "%s/keys", dir);
    audit_keys_t *keys = NULL;
    char err [256] = "";
    assert_int_equal (audit_keys_load (&keys, keys_dir, err, sizeof err), 0);
    char kid [AUDIT_KID_LEN + 1];
    snprintf (kid, sizeof kid, "%s", audit_keys_kid (keys));
    audit_keys_destroy (&keys);
    struct stat st;
    assert_int_equal (stat (keys_dir, &st), 0);
    assert_int_equal (st.st_mode & 0777, 0700);
    snprintf (path, sizeof path, "%s/ed25519.seed", keys_dir);
    assert_int_equal (stat (path, &st), 0);
    assert_int_equal (st.st_mode & 0777, 0600);
    assert_int_equal (st.st_size, 32);
    /* the same key on the next load */
    assert_int_equal (audit_keys_load (&keys, keys_dir, err, sizeof err), 0);
    assert_string_equal (audit_keys_kid (keys), kid);
    audit_keys_destroy (&keys);
    /* readable by others: refused, saying so */
    assert_int_equal (chmod (path, 0644), 0);
    assert_int_equal (audit_keys_load (&keys, keys_dir, err, sizeof err), BUS_EPERM);
    assert_null (keys);
    assert_non_null (strstr (err, "readable by others"));
    assert_int_equal (chmod (path, 0600), 0);
    /* the wrong size: refused */
    snprintf (path, sizeof path, "%s/hmac.key", keys_dir);
    FILE *f = fopen (path, "a");
    fputc ('x', f);
    fclose (f);
    assert_int_equal (audit_keys_load (&keys, keys_dir, err, sizeof err), BUS_EINVAL);
    assert_non_null (strstr (err, "not 32 bytes"));
    test_service_rmtree (dir);
}

/*  --emit FILE: write a JWS made here, its JWKS, and its HMAC tag and key
    as the request tests/js/verify.mjs reads, for the jose check in
    tests/integration/test_audit_jose.sh. Fresh random keys each time. */
static int
s_emit (const char *path)
{
    uint8_t seed [32], hmac [32];
    randombytes_buf (seed, sizeof seed);
    randombytes_buf (hmac, sizeof hmac);
    audit_keys_t *keys = NULL;
    if (audit_keys_from_seed (&keys, seed, hmac))
        return 1;
    json_t *payload = json_pack ("{s:s, s:s, s:[{s:s, s:s}], s:{s:I, s:s}, s:s}",
                                 "run", "01JB3M8Q5X9ZJ2G4T6V8W0Y2A4", "workflow", "procurement",
                                 "steps", "node", "draft", "decision", "allow",
                                 "head", "size", (json_int_t) 42, "root", "00ff",
                                 "note", "caf\xc3\xa9 \xf0\x9f\x98\x80 \"quoted\"\n");
    char *jws = NULL, tag [65], key_hex [65];
    int rc = payload ? audit_jws_sign (keys, payload, &jws) : BUS_ENOMEM;
    if (rc == 0)
        rc = audit_hmac_payload (keys, payload, tag);
    sodium_bin2hex (key_hex, sizeof key_hex, hmac, sizeof hmac);
    json_t *out = rc ? NULL : json_pack ("{s:o, s:s, s:s, s:s, s:O}", "jwks", audit_keys_jwks (keys),
                                         "jws", jws, "hmac_key", key_hex, "hmac", tag, "payload", payload);
    if (!out || json_dump_file (out, path, JSON_COMPACT))
        rc = BUS_EIO;
    json_decref (out);
    json_decref (payload);
    free (jws);
    audit_keys_destroy (&keys);
    return rc ? 1 : 0;
}

int
main (int argc, char **argv)
{
    if (sodium_init () < 0)
        return 1;
    if (argc == 3 && strcmp (argv [1], "--emit") == 0)
        return s_emit (argv [2]);
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_rfc8037_key_and_jws),
        cmocka_unit_test (test_jws_round_trip_and_tampering),
        cmocka_unit_test (test_tree_head),
        cmocka_unit_test (test_hmac),
        cmocka_unit_test (test_redact_fields),
        cmocka_unit_test (test_key_files),
    };
    return test_service_summary (sizeof tests / sizeof tests [0],
                                 cmocka_run_group_tests (tests, NULL, NULL));
}
