/* log.h: the worker's log lines, to stderr, one per notable event.
 *
 * Text: "2026-11-27T10:00:00.123Z INFO [worker-id] message".
 * JSON (EDR_LOG_FORMAT=json): {"time":..,"level":..,"worker":..,"msg":..}.
 * Never pass an EDR's contents or a token to these functions. Any thread. */
#ifndef EDR_WORKER_LOG_H
#define EDR_WORKER_LOG_H

enum log_level { EDR_LOG_DEBUG, EDR_LOG_INFO, EDR_LOG_WARN, EDR_LOG_ERROR };

void log_init(const char *worker_id, enum log_level min_level, int json);
/* Parses "debug", "info", "warn", "error"; -1 when unknown. */
int log_level_parse(const char *s);
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(EDR_LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(EDR_LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(EDR_LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(EDR_LOG_ERROR, __VA_ARGS__)

#endif
