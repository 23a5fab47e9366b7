/*
 * The directory hoteld's Reload may read from (--data-dir), and nothing
 * outside it.
 *
 * A Reload names a file; a client must not be able to make the server
 * read any other file it can reach (its keys, /proc, a FIFO that hangs a
 * worker). The file is opened relative to the directory, opened once at
 * start, with openat2(2) and RESOLVE_BENEATH: the kernel refuses every
 * path whose resolution leaves the directory, whether by "..", by an
 * absolute path or by a symlink pointing out, at the moment of the open
 * (no window between a check and the open). Symlinks that stay inside are
 * followed. Where openat2 is missing (Linux before 5.6, or a seccomp
 * profile that refuses it) the path is walked one component at a time
 * with O_NOFOLLOW and ".." refused: stricter (every symlink is refused),
 * never looser.
 *
 * Threads: after data_dir_open() the directory is read-only; any thread
 * opens files in it.
 */
#ifndef NNGRPC_SERVICE_DATA_DIR_H
#define NNGRPC_SERVICE_DATA_DIR_H

#include <stddef.h>

typedef struct data_dir data_dir;

/* Opens the directory path. Returns new: *dp, freed with
 * data_dir_close(). Returns 0, or an errno value with one line in err. */
int data_dir_open(const char *path, data_dir **dp, char *err, size_t errlen);

/* Frees d. NULL is a no-op. */
void data_dir_close(data_dir *d);

/* The directory's canonical path (realpath). Borrowed from d. */
const char *data_dir_path(const data_dir *d);

/*
 * Opens name for reading (O_RDONLY | O_NONBLOCK | O_CLOEXEC, so that a
 * FIFO cannot block): relative to the directory, or absolute and under
 * its canonical path. Returns a new descriptor (the caller closes it), or
 * -1 with errno set: EXDEV when name leaves the directory (or, without
 * openat2, goes through a symlink), otherwise what open(2) says.
 */
int data_dir_open_file(const data_dir *d, const char *name);

#endif /* NNGRPC_SERVICE_DATA_DIR_H */
