/* store_contract.h: the one behaviour suite every store backend passes.
 *
 * Each backend's test program describes how to open it and calls
 * store_contract_register(); the same CUnit tests then run against it, so
 * memory, file and PostgreSQL are held to identical behaviour. */
#ifndef EDR_TESTS_STORE_CONTRACT_H
#define EDR_TESTS_STORE_CONTRACT_H

#include "stores/fault.h"
#include "stores/store.h"

#include <stddef.h>

struct store_contract_backend {
    const char *name; /* suite name: "contract/<name>" */
    /* Opens a fresh, empty store (no entries, no offsets). */
    struct store *(*open_fresh)(void *ctx);
    /* Reopens what the last open_fresh() created, after close; NULL when
     * the backend is not durable (memory). */
    struct store *(*reopen)(void *ctx);
    void *ctx;
    /* Fault points this backend calls; the suite fails the Nth call of
     * each for N = 1, 2, ... and checks all-or-nothing batches. */
    const enum fault_point *faults;
    size_t n_faults;
};

/* Adds the suite for backend b (b is borrowed; keep it static). */
void store_contract_register(const struct store_contract_backend *b);

#endif
