/* clock.h: the one monotonic clock and the one sleep of the project.
 *
 * Everything that measures a duration or a deadline inside one process uses
 * edr_clock_ms() (CLOCK_MONOTONIC: immune to wall-clock steps); only wire
 * values such as deadline_ms are epoch time (edr_epoch_ms()). base/ is the
 * lowest room: it knows nothing of the product and every layer may include
 * it. Thread-safe. */
#ifndef EDR_BASE_CLOCK_H
#define EDR_BASE_CLOCK_H

#include <stdint.h>

/* Milliseconds on the monotonic clock (arbitrary origin). */
int64_t edr_clock_ms(void);
/* Seconds on the monotonic clock, with sub-millisecond resolution. */
double edr_clock_s(void);
/* Milliseconds since the Unix epoch (wall clock). */
int64_t edr_epoch_ms(void);
/* Sleeps ms milliseconds, resuming after signals until the time is up. */
void edr_sleep_ms(unsigned ms);

#endif
