/* Power-cut recorder (goal D2), loaded with LD_PRELOAD into the NCR writer only.
 *
 * Every fsync()/fdatasync() first records what that call makes durable, then calls the real one:
 *   - a regular file: its whole content, copied to $POWERCUT_DIR/f/<escaped path>;
 *   - a directory: its entry names, one per line, in $POWERCUT_DIR/d/<escaped path>.
 * Each record is written to a temporary name and renamed, so a SIGKILL during the copy leaves the
 * previous record (the sync had not returned: either state is a legal outcome of a power cut).
 * After the writer is killed, tests/faults/powercut.py rebuilds the disk as a power cut would
 * leave it: file contents as of their last sync, and a new file only if its directory was synced
 * after the file was created. Nothing is recorded when POWERCUT_DIR is unset.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int (*real_fsync)(int);
static int (*real_fdatasync)(int);

static void escape(const char *path, char *out, size_t size) {
    size_t j = 0;
    for (size_t i = 0; path[i] && j + 1 < size; i++) out[j++] = path[i] == '/' ? '%' : path[i];
    out[j] = '\0';
}

static int write_all(int fd, const char *data, size_t size) {
    while (size) {
        ssize_t n = write(fd, data, size);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        data += n;
        size -= (size_t)n;
    }
    return 0;
}

static void record(int fd) {
    const char *root = getenv("POWERCUT_DIR");
    if (!root || !*root) return;
    char link[64], path[PATH_MAX], name[PATH_MAX], target[PATH_MAX + 64], tmp[PATH_MAX + 80];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t len = readlink(link, path, sizeof path - 1);
    if (len <= 0) return;
    path[len] = '\0';
    if (strncmp(path, root, strlen(root)) == 0) return; /* our own records */
    struct stat st;
    if (fstat(fd, &st) != 0) return;
    escape(path, name, sizeof name);
    int is_dir = S_ISDIR(st.st_mode);
    snprintf(target, sizeof target, "%s/%s/%s", root, is_dir ? "d" : "f", name);
    snprintf(tmp, sizeof tmp, "%s.%d.tmp", target, (int)gettid());
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) return;
    int ok = 1;
    if (is_dir) {
        DIR *dir = opendir(path);
        struct dirent *entry;
        if (!dir) ok = 0;
        while (ok && (entry = readdir(dir)) != NULL) {
            if (!strcmp(entry->d_name, ".") || !strcmp(entry->d_name, "..")) continue;
            if (write_all(out, entry->d_name, strlen(entry->d_name)) || write_all(out, "\n", 1)) ok = 0;
        }
        if (dir) closedir(dir);
    } else if (S_ISREG(st.st_mode)) {
        int in = open(path, O_RDONLY | O_CLOEXEC);
        char buf[1 << 16];
        ssize_t n;
        if (in < 0) ok = 0;
        while (ok && (n = read(in, buf, sizeof buf)) > 0)
            if (write_all(out, buf, (size_t)n)) ok = 0;
        if (in >= 0) close(in);
    } else {
        ok = 0;
    }
    close(out);
    if (ok) rename(tmp, target); else unlink(tmp);
}

int fsync(int fd) {
    if (!real_fsync) real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    record(fd);
    return real_fsync(fd);
}

int fdatasync(int fd) {
    if (!real_fdatasync) real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    record(fd);
    return real_fdatasync(fd);
}
