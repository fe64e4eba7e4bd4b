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

/* fsyncs the folder that holds path's last component. */
static int fs_fsync_parent(char *path)
{
    char *slash = strrchr(path, '/');
    if (!slash)
        return fs_fsync_dir(".");
    if (slash == path)
        return fs_fsync_dir("/");
    *slash = '\0';
    int rc = fs_fsync_dir(path);
    *slash = '/';
    return rc;
}

int fs_mkdirs(const char *dir)
{
    char *d = strdup(dir);
    int rc = 0;
    if (!d)
        return -1;
    for (char *p = d + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(d, 0700) == 0) {
                /* A folder is durable once it and its name in its parent
                 * are: fsync both, or a crash could lose the store's
                 * files with the folder they were in. */
                if (fs_fsync_dir(d) != 0 || fs_fsync_parent(d) != 0)
                    rc = -1;
            } else if (errno != EEXIST) {
                rc = -1;
            }
            *p = c;
            if (rc != 0 || c == '\0')
                break;
        }
    }
    int e = errno;
    free(d);
    errno = e;
    return rc;
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
        if (r < 0) {
            /* Never a short file: what follows could be a torn tail cut
             * off, or an empty store, both wrong. */
            int e = errno;
            close(fd);
            free(buf);
            *len = n;
            errno = e;
            return -1;
        }
        if (r == 0)
            break; /* shorter than fstat said: it is what there is */
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}
