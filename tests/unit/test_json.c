/*
 * test_json.c — party.h's JSON writer and escaping (shard/json.c): quotes, backslashes, control characters and bad
 * UTF-8 in strings; commas and nesting; misuse fails the writer (NULL text) instead of producing broken JSON.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "party.h"

static void test_escape(void **state)
{
    (void)state;
    char out[128];
    const char in[] = "a\"b\\c\n\t\x01\x7f"
                      "\xc3\xa9"
                      "\xff"
                      "z";
    size_t n = party_json_escape(out, sizeof(out), in, sizeof(in) - 1);
    const char want[] = "a\\\"b\\\\c\\n\\t\\u0001\\u007f\xc3\xa9\\ufffdz";
    assert_string_equal(out, want);
    assert_int_equal(n, strlen(want));
    /* cut as snprintf cuts: the needed length comes back, the output stays NUL-terminated */
    char small[5];
    assert_int_equal(party_json_escape(small, sizeof(small), "\"\"\"", 3), 6);
    assert_string_equal(small, "\\\"\\\"");
    assert_int_equal(party_json_escape(NULL, 0, "ab", 2), 2);
    /* an overlong encoding and a surrogate are not UTF-8 */
    assert_int_equal(party_json_escape(out, sizeof(out),
                                       "\xc0\xaf"
                                       "\xed\xa0\x80",
                                       5),
                     5 * 6);
}

static void test_writer(void **state)
{
    (void)state;
    party_json_t *j = party_json_new();
    assert_non_null(j);
    party_json_object(j);
    party_json_key(j, "type");
    party_json_str(j, "welcome");
    party_json_key(j, "id");
    party_json_str(j, "he said \"hi\" \\");
    party_json_key(j, "k\"ey");
    party_json_array(j);
    party_json_int(j, -3);
    party_json_double(j, 0.1);
    party_json_double(j, NAN);
    party_json_bool(j, 1);
    party_json_bool(j, 0);
    party_json_null(j);
    party_json_strn(j, "a\0b", 3);
    party_json_raw(j, "{\"x\":[1,2]}", 11);
    party_json_object(j);
    party_json_end(j);
    party_json_end(j);
    party_json_key(j, "null");
    party_json_str(j, NULL);
    party_json_end(j);
    size_t len;
    const char *text = party_json_text(j, &len);
    const char want[] = "{\"type\":\"welcome\",\"id\":\"he said \\\"hi\\\" \\\\\",\"k\\\"ey\":[-3,0.1,null,true,false,null,"
                        "\"a\\u0000b\",{\"x\":[1,2]},{}],\"null\":null}";
    assert_non_null(text);
    assert_string_equal(text, want);
    assert_int_equal(len, strlen(want));
    assert_int_equal(party_json_error(j), 0);
    party_json_free(j);
    party_json_free(NULL);
}

static void test_misuse(void **state)
{
    (void)state;
    party_json_t *j = party_json_new();
    party_json_object(j);
    party_json_int(j, 1); /* a value without its key */
    party_json_end(j);
    assert_null(party_json_text(j, NULL));
    assert_int_equal(party_json_error(j), -EINVAL);
    party_json_free(j);

    j = party_json_new();
    party_json_array(j);
    assert_null(party_json_text(j, NULL)); /* still open */
    party_json_end(j);
    assert_string_equal(party_json_text(j, NULL), "[]");
    party_json_int(j, 2); /* a second value at the top */
    assert_null(party_json_text(j, NULL));
    party_json_free(j);

    j = party_json_new();
    party_json_end(j); /* nothing open */
    assert_int_equal(party_json_error(j), -EINVAL);
    party_json_free(j);

    j = party_json_new();
    for (int i = 0; i < 65; ++i)
        party_json_array(j);
    assert_int_equal(party_json_error(j), -E2BIG);
    party_json_free(j);

    /* a long string grows the buffer */
    j = party_json_new();
    char big[5000];
    memset(big, '"', sizeof(big));
    party_json_strn(j, big, sizeof(big));
    size_t len;
    assert_non_null(party_json_text(j, &len));
    assert_int_equal(len, 2 + 2 * sizeof(big));
    party_json_free(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_writer),
        cmocka_unit_test(test_misuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
