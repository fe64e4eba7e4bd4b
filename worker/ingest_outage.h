/* ingest_outage.h: what a worker stuck on a failing dependency (the
 * store, the dead-letter topic) logs, and when.
 *
 * Every failed attempt is reported here; a line is due for the first
 * failure, for each change of its reason (connection refused -> password
 * rejected -> server not answering), and as a reminder every
 * OUTAGE_REMIND_S seconds while the same reason lasts, never per attempt.
 * A plain value type without a clock of its own (the caller passes now),
 * one per dependency; one thread. */
#ifndef EDR_WORKER_INGEST_OUTAGE_H
#define EDR_WORKER_INGEST_OUTAGE_H

#define OUTAGE_REMIND_S 60.0

struct outage_log {
    int active;        /* a failure since the last success */
    char why[256];     /* the reason of the last line logged */
    double began;      /* seconds (caller's clock) of the first failure */
    double logged;     /* when the last line was logged */
    unsigned failures; /* failed attempts since the first failure */
};

enum outage_line {
    OUTAGE_LINE_NONE = 0, /* nothing new: stay quiet */
    OUTAGE_LINE_FIRST,    /* the outage begins */
    OUTAGE_LINE_CHANGED,  /* same outage, another reason */
    OUTAGE_LINE_REMINDER, /* same reason, OUTAGE_REMIND_S since the last */
};

/* Records one failed attempt with reason why (copied) at now; returns
 * which line is due. */
enum outage_line outage_log_failure(struct outage_log *o, const char *why,
                                    double now);

/* outage_log_failure, and logs the line that is due at warn level: what
 * names the dependency ("store"), action what the worker does meanwhile
 * ("pausing consumption and retrying"). Returns the line kind. */
enum outage_line outage_log_note(struct outage_log *o, const char *what,
                                 const char *action, const char *why,
                                 double now);

/* After a success: returns the failed attempts of the outage that ended
 * (0: there was none), and forgets it. */
unsigned outage_log_end(struct outage_log *o);

#endif
