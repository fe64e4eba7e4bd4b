/* edrctl_publish.c: `edrctl publish` (schemas/README.md §5). Builds a
 * CloudEvent (schemas/event_encode.h), checks it with the worker's own
 * decoder, produces it idempotently with the connection key as record key
 * and waits for the delivery report. --raw publishes bytes verbatim, a
 * testing aid for rejected events. */
#include "tools/edrctl.h"
#include "tools/edrctl_args.h"
#include "tools/edrctl_publish.h"

#include "schemas/edr_key.h"
#include "schemas/event.h"
#include "schemas/event_encode.h"
#include "worker/config_parse.h"

#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_HEADERS 16

struct publish_args {
    const char *type;
    const char *party, *address, *query, *policy;
    const char *edr;
    const char *transfer_id;
    const char *source, *subject, *id;
    const char *raw, *key;
    const char *headers[MAX_HEADERS];
    int n_headers;
    int help;
};

static void publish_usage(FILE *out)
{
    fprintf(out,
            "Usage: edrctl publish negotiated|renewed|expired --party ID "
            "--address URL\n"
            "           --query SUM --policy SUM [--edr JSON | --edr @FILE]\n"
            "           [--transfer-id ID] [--source URI] [--subject S] "
            "[--id ID]\n"
            "       edrctl publish --raw @FILE|- [--key K] [--header "
            "NAME=VALUE]...\n"
            "\n"
            "Produces one event to EDR_TOPIC (key: the connection key; "
            "header\ncontent-type: application/cloudevents+json), waits for "
            "the broker's\nacknowledgement and prints {\"partition\": p, "
            "\"offset\": o}.\n"
            "\n"
            "  --edr JSON|@FILE   data.edr of negotiated/renewed (an "
            "object with\n"
            "                     transferProcessId); without it, "
            "--transfer-id ID\n"
            "                     makes {\"transferProcessId\": ID}\n"
            "  --transfer-id ID   expired: data.transfer_process_id (only "
            "an expiry of\n"
            "                     that transfer removes the entry)\n"
            "  --source URI       CloudEvents source (default "
            "urn:edrctl:<host name>)\n"
            "  --subject S        default: the transfer process id\n"
            "  --id ID            default: a fresh random UUID\n"
            "Testing aid:\n"
            "  --raw @FILE|-      publish the bytes of FILE (or stdin) "
            "verbatim, unchecked\n"
            "                     (e.g. malformed events for dead-letter "
            "tests)\n"
            "  --key K            record key of --raw (default: none)\n"
            "  --header N=V       add a record header (repeatable)\n"
            "The event is checked with the worker's decoder first: an "
            "invalid one\nexits 2 with the reason. Exit 3 when the broker "
            "does not acknowledge it\nwithin EDR_TIMEOUT_MS.\n");
}

static int parse_args(int argc, char **argv, struct publish_args *a)
{
    static const char *const names[] = {
        "--party", "--address",     "--query",  "--policy",
        "--edr",   "--transfer-id", "--source", "--subject",
        "--id",    "--raw",         "--key"};
    memset(a, 0, sizeof(*a));
    for (int i = 1; i < argc; i++) {
        const char **slots[] = {&a->party,  &a->address, &a->query,
                                &a->policy, &a->edr,     &a->transfer_id,
                                &a->source, &a->subject, &a->id,
                                &a->raw,    &a->key};
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            a->help = 1;
            return 0;
        }
        int m = 0;
        for (size_t k = 0; k < sizeof(names) / sizeof(names[0]) && !m; k++)
            m = edrctl_take_flag(argc, argv, &i, names[k], slots[k]);
        if (!m) {
            const char *h = NULL;
            m = edrctl_take_flag(argc, argv, &i, "--header", &h);
            if (m == 1) {
                if (a->n_headers == MAX_HEADERS || !strchr(h, '=')) {
                    fprintf(stderr, "edrctl publish: --header takes "
                                    "NAME=VALUE (at most 16)\n");
                    return -1;
                }
                a->headers[a->n_headers++] = h;
            }
        }
        if (m < 0) {
            fprintf(stderr, "edrctl publish: %s needs a value\n", argv[i]);
            return -1;
        }
        if (m)
            continue;
        if (argv[i][0] != '-' && !a->type) {
            a->type = argv[i];
            continue;
        }
        fprintf(stderr, "edrctl publish: unknown argument \"%s\"\n", argv[i]);
        return -1;
    }
    return 0;
}

/* Reads all of path ("-" for stdin) into a malloc'd buffer. */
static char *read_all(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (n < cap) {
            if (ferror(f)) {
                free(buf);
                buf = NULL;
            }
            break;
        }
        char *grown =
            cap > ((size_t)64 << 20) ? NULL : realloc(buf, cap * 2 + 1);
        if (!grown) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = grown;
        cap *= 2;
    }
    if (f != stdin)
        fclose(f);
    if (buf) {
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct edrctl_producer *p = opaque;
    (void)rk;
    if (m->err) {
        if (!p->failed++)
            p->first_err = m->err;
        return;
    }
    p->delivered++;
    p->partition = m->partition;
    p->offset = m->offset;
}

int edrctl_producer_open(struct edrctl_producer *p, const struct config *cfg,
                         const char *who)
{
    char errstr[512], timeout[32];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    memset(p, 0, sizeof(*p));
    p->who = who;
    p->timeout_ms = cfg->timeout_ms;
    snprintf(timeout, sizeof(timeout), "%d", cfg->timeout_ms);
    if (config_kafka_set(conf, "bootstrap.servers", cfg->brokers, errstr,
                         sizeof(errstr)) ||
        config_kafka_set(conf, "linger.ms", "0", errstr, sizeof(errstr)) ||
        config_kafka_set(conf, "message.timeout.ms", timeout, errstr,
                         sizeof(errstr)) ||
        config_kafka_set(conf, "client.id", "edrctl", errstr, sizeof(errstr)) ||
        config_apply_kafka_props(cfg, conf, errstr, sizeof(errstr)) ||
        config_kafka_set(conf, "enable.idempotence", "true", errstr,
                         sizeof(errstr))) {
        fprintf(stderr, "edrctl %s: %s\n", who, errstr);
        rd_kafka_conf_destroy(conf);
        return EDRCTL_USAGE;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    /* librdkafka's own lines (connection refused, ...) would bury the one
     * line that says what happened to the events. */
    rd_kafka_conf_set_log_cb(conf, NULL);
    rd_kafka_conf_set_opaque(conf, p);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!p->rk) {
        fprintf(stderr, "edrctl %s: %s\n", who, errstr);
        rd_kafka_conf_destroy(conf);
        return EDRCTL_ERROR;
    }
    return EDRCTL_OK; /* conf is now owned by p->rk */
}

int edrctl_producer_send(struct edrctl_producer *p, const char *topic,
                         const char *key, size_t key_len, const char *value,
                         size_t len, rd_kafka_headers_t *hdrs)
{
    rd_kafka_resp_err_t err;
    for (;;) {
        err = rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(topic),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_KEY(key, key_len),
                                RD_KAFKA_V_VALUE((void *)value, len),
                                RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            break;
        rd_kafka_poll(p->rk, 100); /* a large invalidate: let reports drain */
    }
    if (err) {
        fprintf(stderr, "edrctl %s: %s\n", p->who, rd_kafka_err2str(err));
        if (hdrs)
            rd_kafka_headers_destroy(hdrs);
        return EDRCTL_ERROR;
    }
    p->sent++; /* hdrs now owned by the message */
    return EDRCTL_OK;
}

int edrctl_producer_send_event(struct edrctl_producer *p, const char *topic,
                               const struct event_spec *spec,
                               rd_kafka_headers_t *hdrs)
{
    char errstr[512];
    char *json = NULL;
    size_t json_len = 0;
    struct event ev;

    if (event_encode(spec, &json, &json_len, errstr, sizeof(errstr)) != 0) {
        fprintf(stderr, "edrctl %s: %s\n", p->who, errstr);
        if (hdrs)
            rd_kafka_headers_destroy(hdrs);
        return EDRCTL_USAGE;
    }
    /* The worker's own decoder decides: never produce an event it would
     * dead-letter. */
    if (event_decode(&ev, json, json_len, errstr, sizeof(errstr)) != EVENT_OK) {
        fprintf(stderr, "edrctl %s: invalid event: %s\n", p->who, errstr);
        free(json);
        if (hdrs)
            rd_kafka_headers_destroy(hdrs);
        return EDRCTL_USAGE;
    }
    event_clear(&ev);

    char ckey[EDR_CONNECTION_KEY_LEN + 1];
    edr_connection_key(&spec->key, ckey);
    if (!hdrs)
        hdrs = rd_kafka_headers_new(1);
    rd_kafka_header_add(hdrs, "content-type", -1,
                        "application/cloudevents+json", -1);
    int code = edrctl_producer_send(p, topic, ckey, EDR_CONNECTION_KEY_LEN,
                                    json, json_len, hdrs);
    free(json);
    return code;
}

int edrctl_producer_flush(struct edrctl_producer *p)
{
    rd_kafka_flush(p->rk, p->timeout_ms + 1000);
    if (p->delivered + p->failed < p->sent) {
        fprintf(stderr,
                "edrctl %s: no delivery report for %zu of %zu event(s) "
                "within %d ms\n",
                p->who, p->sent - p->delivered - p->failed, p->sent,
                p->timeout_ms);
        return EDRCTL_ERROR;
    }
    if (p->failed) {
        fprintf(stderr, "edrctl %s: %zu of %zu not delivered: %s\n", p->who,
                p->failed, p->sent, rd_kafka_err2str(p->first_err));
        return EDRCTL_ERROR;
    }
    return EDRCTL_OK;
}

void edrctl_producer_close(struct edrctl_producer *p)
{
    if (p->rk)
        rd_kafka_destroy(p->rk);
    p->rk = NULL;
}

void edrctl_default_source(char *out, size_t n)
{
    char host[256];
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    snprintf(out, n, "urn:edrctl:%s", host);
}

/* Produces one record or event, waits for its report and prints its
 * position. spec NULL: the raw record key/value. */
static int publish_one(const struct config *cfg, const struct event_spec *spec,
                       const char *key, const char *value, size_t len,
                       rd_kafka_headers_t *hdrs)
{
    struct edrctl_producer p;
    int code = edrctl_producer_open(&p, cfg, "publish");
    if (code != EDRCTL_OK) {
        if (hdrs)
            rd_kafka_headers_destroy(hdrs);
        return code;
    }
    if (spec) {
        code = edrctl_producer_send_event(&p, cfg->topic, spec, hdrs);
    } else {
        code = edrctl_producer_send(&p, cfg->topic, key, key ? strlen(key) : 0,
                                    value, len, hdrs);
    }
    if (code == EDRCTL_OK)
        code = edrctl_producer_flush(&p);
    if (code == EDRCTL_OK)
        printf("{\"partition\": %" PRId32 ", \"offset\": %" PRId64 "}\n",
               p.partition, p.offset);
    edrctl_producer_close(&p);
    return code;
}

static int parse_type(const char *s, enum event_type *t)
{
    if (!s)
        return -1;
    if (strcmp(s, "negotiated") == 0 || strcmp(s, "edr.negotiated") == 0)
        *t = EVENT_NEGOTIATED;
    else if (strcmp(s, "renewed") == 0 || strcmp(s, "edr.renewed") == 0)
        *t = EVENT_RENEWED;
    else if (strcmp(s, "expired") == 0 || strcmp(s, "edr.expired") == 0)
        *t = EVENT_EXPIRED;
    else
        return -1;
    return 0;
}

int edrctl_publish_main(const struct config *cfg, int argc, char **argv)
{
    struct publish_args a;
    char *edr_buf = NULL, *raw = NULL;
    size_t edr_len = 0, raw_len = 0;
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(MAX_HEADERS + 1);
    char source[300];
    int code = EDRCTL_USAGE;

    if (parse_args(argc, argv, &a) != 0)
        goto out;
    if (a.help) {
        publish_usage(stdout);
        code = EDRCTL_OK;
        goto out;
    }
    for (int i = 0; i < a.n_headers; i++) {
        const char *eq = strchr(a.headers[i], '=');
        rd_kafka_header_add(hdrs, a.headers[i], eq - a.headers[i], eq + 1, -1);
    }

    if (a.raw) {
        if (a.type) {
            fprintf(stderr, "edrctl publish: --raw takes no event type\n");
            goto out;
        }
        if (!(raw = read_all(a.raw[0] == '@' ? a.raw + 1 : a.raw, &raw_len))) {
            fprintf(stderr, "edrctl publish: --raw: cannot read %s\n", a.raw);
            goto out;
        }
        code = publish_one(cfg, NULL, a.key, raw, raw_len, hdrs);
        hdrs = NULL; /* publish_one() frees it */
        goto out;
    }

    enum event_type type;
    if (parse_type(a.type, &type) != 0) {
        fprintf(stderr, "edrctl publish: the event type must be "
                        "negotiated, renewed or expired\n");
        publish_usage(stderr);
        goto out;
    }
    const char *missing = !a.party     ? "--party"
                          : !a.address ? "--address"
                          : !a.query   ? "--query"
                          : !a.policy  ? "--policy"
                                       : NULL;
    if (missing) {
        fprintf(stderr, "edrctl publish: %s is required\n", missing);
        goto out;
    }
    if (a.key) {
        fprintf(stderr, "edrctl publish: --key is for --raw only (events "
                        "are keyed by their connection key)\n");
        goto out;
    }
    if (a.edr && a.edr[0] == '@') {
        if (!(edr_buf = read_all(a.edr + 1, &edr_len))) {
            fprintf(stderr, "edrctl publish: --edr: cannot read %s\n",
                    a.edr + 1);
            goto out;
        }
    } else if (a.edr) {
        edr_len = strlen(a.edr);
    }
    if (!a.source)
        edrctl_default_source(source, sizeof(source));
    struct event_spec spec = {
        .type = type,
        .id = a.id,
        .source = a.source ? a.source : source,
        .subject = a.subject,
        .key = {a.party, a.address, a.query, a.policy},
        .edr_json = edr_buf ? edr_buf : a.edr,
        .edr_len = edr_len,
        .transfer_id = a.transfer_id,
    };
    code = publish_one(cfg, &spec, NULL, NULL, 0, hdrs);
    hdrs = NULL; /* publish_one() frees it */

out:
    if (hdrs)
        rd_kafka_headers_destroy(hdrs);
    free(edr_buf);
    free(raw);
    return code;
}
