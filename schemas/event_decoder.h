/* event_decoder.h: the state of one event_decode call, shared by the files
 * of the decoder (private to schemas/event_*.c; see event.h):
 *   event_decode.c  the streaming traversal: yajl callbacks, frames,
 *                   skipping, duplicate checks, the end-of-event rules
 *   event_rules.c   what each member of the contract must be, and the
 *                   reasons (with member paths) for what breaks a rule
 *   event_edr.c     data.edr re-serialized with yajl_gen, the spans of
 *                   its members, and the one block struct event owns
 *
 * Member paths in reasons are dotted from the top level, with [i] for
 * array elements: "data.edr.transferProcessId", "data.edr.x[2].y". The
 * top-level value itself is called "top level". */
#ifndef EDR_SCHEMAS_EVENT_DECODER_H
#define EDR_SCHEMAS_EVENT_DECODER_H

#include "schemas/arena.h"
#include "schemas/dup_members.h"
#include "schemas/event.h"

#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Deeper nesting than this is rejected. The contract sets no limit, but
 * stores and lookups walk entries recursively and yajl_gen stops at 128;
 * EDC's EDR entries are a few levels deep. Documented in schemas/README. */
#define EVENT_MAX_DEPTH 64

enum role {
    ROLE_ENVELOPE,  /* the top-level object */
    ROLE_DATA,      /* data */
    ROLE_EDR,       /* data.edr: copied, its members' spans recorded */
    ROLE_EDR_INNER, /* anything inside data.edr: copied as is */
};

enum member {
    M_OTHER, /* ignored, or copied inside data.edr */
    M_SPECVERSION,
    M_ID,
    M_SOURCE,
    M_TYPE,
    M_TIME,
    M_SUBJECT,
    M_DATACONTENTTYPE,
    M_DATA,
    M_COUNTER_PARTY_ID,
    M_COUNTER_PARTY_ADDRESS,
    M_QUERY_CHECKSUM,
    M_POLICY_CHECKSUM,
    M_EDR,
    M_TRANSFER_PROCESS_ID,
    M_EDR_TRANSFER, /* data.edr.transferProcessId */
    M_COUNT
};

/* Members of the contract seen so far, as bits of struct decoder.seen:
 * for "missing" at the end and as their own duplicate check. */
#define SEEN(m) (1u << (m))
_Static_assert(M_COUNT <= 32, "decoder.seen has 32 bits");

struct frame {
    const char *key; /* maps: name of the member being read (for paths) */
    size_t key_len;
    size_t count; /* arrays: elements begun so far */
    uint32_t serial;
    bool is_array;
    unsigned char role;
    unsigned char member;
};

enum edr_state {
    EDR_ABSENT,
    EDR_COPYING, /* being written to gen */
    EDR_DONE,    /* complete in gen */
    EDR_IGNORED, /* skipped because type is edr.expired */
    EDR_BROKEN,  /* broke a rule before type was known: edr_err */
};

struct decoder {
    struct event *ev;
    const unsigned char *buf;
    size_t len;
    char *errstr;
    size_t errstr_size;
    enum event_error err;
    jmp_buf *oom; /* where running out of memory jumps to */
    /* json_scan_text found a \u0000 at nul_at: the first string that
     * holds it is rejected (naming the member when it is a key field). */
    bool has_nul;
    size_t nul_at;

    struct frame frames[EVENT_MAX_DEPTH + 1]; /* [1] is the top level */
    int depth;
    size_t skip; /* > 0: inside an ignored container, this many deep */
    uint32_t serial;
    unsigned seen;

    enum edr_state edr;
    char edr_err[128];
    char *edr_transfer_id;        /* data.edr.transferProcessId */
    char *data_transfer_id;       /* data.transfer_process_id */
    bool data_transfer_bad;       /* ... present but not a string */
    yajl_gen gen;                 /* data.edr re-serialized */
    struct event_member *members; /* data.edr's top-level members */
    size_t n_members, members_cap;

    struct arena arena;
    yajl_alloc_funcs afs;
    struct dup_members dups;
};

/* ---- event_decode.c ---- */

/* n bytes from the arena; out of memory leaves the parse through d->oom
 * (yajl cannot report a failed allocation, so nothing returns NULL). */
void *dec_alloc(struct decoder *d, size_t n);
/* A NUL-terminated copy of s[0..n) in the arena. */
char *dec_copy_str(struct decoder *d, const unsigned char *s, size_t n);
/* true when p[0..n) lies inside the input (inline: asked per string). */
static inline bool dec_in_input(const struct decoder *d, const unsigned char *p,
                                size_t n)
{
    uintptr_t b = (uintptr_t)d->buf, q = (uintptr_t)p;
    return q >= b && q <= b + d->len && n <= b + d->len - q;
}

/* ---- event_rules.c ---- */

/* Sets d->err and the reason; returns 0 (what stops a yajl parse). */
int dec_fail(struct decoder *d, enum event_error e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Appends s[0..n) to out (cap bytes, at *pos) with bytes that could
 * confuse a log reader escaped; cuts at max bytes with "...". */
void dec_put_text(char *out, size_t cap, size_t *pos, const char *s, size_t n,
                  size_t max);
/* The path of the member or element read at depth d->depth. */
void dec_render_path(const struct decoder *d, char *out, size_t cap);
/* data.edr broke a rule: msg; see event_rules.c. */
int dec_edr_broken(struct decoder *d, const char *msg, size_t open_inside);
size_t dec_edr_open_below_data(const struct decoder *d);
bool dec_type_known(const struct decoder *d);

unsigned dec_envelope_member(const char *k, size_t n);
unsigned dec_data_member(const char *k, size_t n);
unsigned dec_edr_member(const char *k, size_t n);
/* A value of an envelope / data member (s NULL: not a string, or a
 * container). 1 to go on, 0 when it breaks a rule. */
int dec_envelope_value(struct decoder *d, unsigned member,
                       const unsigned char *s, size_t n);
int dec_data_value(struct decoder *d, unsigned member, const unsigned char *s,
                   size_t n);
int dec_take_transfer_process_id(struct decoder *d, const unsigned char *s,
                                 size_t n);

/* ---- event_edr.c ---- */

int edr_out_begin(struct decoder *d);
int edr_out_open(struct decoder *d, bool is_array);
/* top: the close of data.edr itself. */
int edr_out_close(struct decoder *d, bool is_array, bool top);
/* A member name; top says it is a member of data.edr itself. */
int edr_out_key(struct decoder *d, const unsigned char *k, size_t n, bool top);
/* kind: 'n' null, 'b' boolean (n is the value), '#' number, 's' string. */
int edr_out_scalar(struct decoder *d, char kind, const unsigned char *s,
                   size_t n);
/* Moves the event's strings and data.edr into the one block of d->ev;
 * with_edr false for edr.expired. 0, or -1 when out of memory. */
int edr_pack_event(struct decoder *d, bool with_edr);

#endif
