/* fuzz_event_decode.c: libFuzzer target for event_decode() and the
 * handler, the code that takes bytes from Kafka.
 *
 * Besides "no crash, no overread, no leak, no UB" it checks what must hold
 * for every input: an error has a class and a reason; an accepted event
 * is also accepted by yajl's own validating tree parser, gives a store op,
 * and its stored entry is a JSON object whose transferProcessId is the
 * op's transfer id and which has none of the dropped members. Violations
 * abort(). The same function runs over the seed corpus in ctest
 * (fuzz_replay_main.c), so gcc builds exercise it too. */
#include "handlers/handler.h"
#include "schemas/event.h"

#include <yajl/yajl_tree.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int fuzz_verdict(const uint8_t *data, size_t size, char *reason, size_t cap,
                 const char **err_class);

/* For the corpus replay (fuzz_replay_main.c): 1 when the input is
 * accepted, else 0 with the reason and the error class. */
int fuzz_verdict(const uint8_t *data, size_t size, char *reason, size_t cap,
                 const char **err_class)
{
    struct event ev;
    enum event_error e = event_decode(&ev, data, size, reason, cap);
    *err_class = event_error_class(e);
    event_clear(&ev);
    return e == EVENT_OK;
}

static void check(int ok)
{
    if (!ok)
        abort();
}

/* (v2) An accepted key field holds no control character. */
static int no_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7F)
            return 0;
    return 1;
}

static void check_entry(const struct event *ev, const struct store_op *op)
{
    static const char *tp_path[] = {"transferProcessId", NULL};
    static const char *dropped[] = {"@type", "@context", "providerId"};
    char err[128];

    check(op->kind == STORE_OP_PUT && op->entry_json != NULL);
    check(strlen(op->entry_json) == op->entry_len);
    check(strlen(ev->edr_json) == ev->edr_len);
    check(op->entry_len <= ev->edr_len);
    yajl_val v = yajl_tree_parse(op->entry_json, err, sizeof(err));
    check(v != NULL && YAJL_IS_OBJECT(v));
    yajl_val tp = yajl_tree_get(v, tp_path, yajl_t_string);
    check(tp != NULL && strcmp(tp->u.string, op->transfer_id) == 0);
    for (size_t i = 0; i < 3; i++) {
        const char *p[] = {dropped[i], NULL};
        check(yajl_tree_get(v, p, yajl_t_any) == NULL);
    }
    yajl_tree_free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct event ev;
    struct store_op op;
    char err[256];

    /* An exact-size copy: no terminator for the decoder to lean on. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    enum event_error e = event_decode(&ev, buf, size, err, sizeof(err));
    free(buf);
    if (e != EVENT_OK) {
        check(err[0] != '\0' && ev.id == NULL);
        check(strcmp(event_error_class(e), "unknown") != 0);
        return 0;
    }
    check(ev.id && *ev.id && ev.source && *ev.source);
    check(ev.counter_party_id && ev.counter_party_address &&
          ev.query_checksum && ev.policy_checksum);
    check(no_control(ev.counter_party_id) &&
          no_control(ev.counter_party_address) &&
          no_control(ev.query_checksum) && no_control(ev.policy_checksum));
    check(event_type_name(ev.type) != NULL);
    check(handler_event_to_op(&ev, &op) == 0);
    if (ev.type == EVENT_EXPIRED) {
        check(op.kind == STORE_OP_DELETE && ev.edr_json == NULL);
    } else {
        check(ev.transfer_id && *ev.transfer_id);
        check_entry(&ev, &op);
    }
    event_clear(&ev);

    /* What we accept, yajl's validating parser accepts too. */
    char *text = malloc(size + 1);
    if (text) {
        memcpy(text, data, size);
        text[size] = '\0';
        yajl_val v = yajl_tree_parse(text, err, sizeof(err));
        check(v != NULL && YAJL_IS_OBJECT(v));
        yajl_tree_free(v);
        free(text);
    }
    return 0;
}
