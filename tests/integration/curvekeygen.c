/* curvekeygen.c -- writes a CURVE key pair for integration tests in the format of
 * `ternctl keygen` (DIR/NAME.key: Z85 secret key and a newline, mode 0600;
 * DIR/NAME.pub: Z85 public key and a newline), so the harness does not depend on
 * ternctl being built, and a test can make a key no region knows.
 *
 *   curvekeygen NAME DIR       exit 0, or 1 with a message on stderr
 * Overwrites existing files. Single-threaded. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

static int write_file(const char *path, const char *text, mode_t mode) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    size_t len = strlen(text);
    if (fd < 0) return -1;
    if (write(fd, text, len) != (ssize_t)len || write(fd, "\n", 1) != 1) {
        close(fd);
        return -1;
    }
    return close(fd);
}

int main(int argc, char **argv) {
    char pub[41], sec[41], path[4096];
    if (argc != 3) {
        fprintf(stderr, "usage: curvekeygen NAME DIR\n");
        return 2;
    }
    if (zmq_curve_keypair(pub, sec) != 0) {
        fprintf(stderr, "curvekeygen: %s\n", zmq_strerror(errno));
        return 1;
    }
    snprintf(path, sizeof path, "%s/%s.key", argv[2], argv[1]);
    if (write_file(path, sec, 0600) != 0) {
        fprintf(stderr, "curvekeygen: %s: %s\n", path, strerror(errno));
        return 1;
    }
    snprintf(path, sizeof path, "%s/%s.pub", argv[2], argv[1]);
    if (write_file(path, pub, 0644) != 0) {
        fprintf(stderr, "curvekeygen: %s: %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
}
