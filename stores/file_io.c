/* file_io.c: the file store's system calls: whole writes, fsyncs, mkdir -p
 * and whole-file reads (file_store_int.h).
 *
 * Before every real write and fsync, fault_hit() may make the call fail
 * (ENOSPC / EIO), to test the callers' error paths. */
#include "stores/fault.h"
#include "stores/file_store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Writes all of p (at off, or at the file position when off < 0). */
int fs_write_all(int fd, const char *p, size_t n, int64_t off)
{
    while (n > 0) {
        ssize_t w;
        if (fault_hit(FAULT_WRITE)) {
            errno = ENOSPC;
            return -1;
        }
        w = off >= 0 ? pwrite(fd, p, n, (off_t)off) : write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
        if (off >= 0)
            off += w;
    }
    return 0;
}

int fs_fsync(int fd, int data_only)
{
    if (fault_hit(FAULT_FSYNC)) {
        errno = EIO;
        return -1;
    }
    return data_only ? fdatasync(fd) : fsync(fd);
}

int fs_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fs_fsync(fd, 0);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* mkdir -p with 0700 for what it creates. */
int fs_mkdirs(const char *dir)
{
    char *d = strdup(dir);
    if (!d)
        return -1;
    for (char *p = d + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(d, 0700) != 0 && errno != EEXIST) {
                free(d);
                return -1;
            }
            *p = c;
            if (c == '\0')
                break;
        }
    }
    free(d);
    return 0;
}

/* Reads a whole file; 1 when it does not exist. */
int fs_read_file(const char *path, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    *out = NULL;
    *len = 0;
    if (fd < 0)
        return errno == ENOENT ? 1 : -1;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return -1;
    }
    size_t cap = (size_t)sb.st_size, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        close(fd);
        errno = ENOMEM;
        return -1;
    }
    while (n < cap) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}
