/*
 * The confined data directory (data_dir.h has the design).
 */
#include "data_dir.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/openat2.h>

struct data_dir {
	int  d_fd; /* O_PATH | O_DIRECTORY */
	char d_path[PATH_MAX];
};

int
data_dir_open(const char *path, data_dir **dp, char *err, size_t errlen)
{
	data_dir *d = calloc(1, sizeof(*d));
	int       rv;

	if (d == NULL) {
		snprintf(err, errlen, "--data-dir: out of memory");
		return (ENOMEM);
	}
	if (realpath(path, d->d_path) == NULL
	    || (d->d_fd = open(d->d_path, O_PATH | O_DIRECTORY | O_CLOEXEC))
	        < 0) {
		rv = errno;
		snprintf(err, errlen, "--data-dir %s: %s", path, strerror(rv));
		free(d);
		return (rv);
	}
	*dp = d;
	return (0);
}

void
data_dir_close(data_dir *d)
{
	if (d != NULL) {
		close(d->d_fd);
		free(d);
	}
}

const char *
data_dir_path(const data_dir *d)
{
	return (d->d_path);
}

/* Without openat2: one component at a time from the directory, with
 * O_NOFOLLOW; ".." and every symlink (ELOOP) are refused as EXDEV. */
static int
open_walking(const data_dir *d, const char *name)
{
	char  buf[PATH_MAX];
	char *part, *save = NULL;
	int   dir = d->d_fd, fd = -1;

	if (strlen(name) >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return (-1);
	}
	strcpy(buf, name);
	for (part = strtok_r(buf, "/", &save); part != NULL;) {
		char *next = strtok_r(NULL, "/", &save);
		int   flags = next != NULL
		      ? O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
		      : O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC;

		if (strcmp(part, "..") == 0) {
			errno = EXDEV;
			fd = -1;
		} else {
			fd = openat(dir, part, flags);
			if (fd < 0 && errno == ELOOP) {
				errno = EXDEV; /* a symlink */
			}
		}
		if (dir != d->d_fd) {
			int saved = errno;
			close(dir);
			errno = saved;
		}
		if (fd < 0 || next == NULL) {
			return (fd);
		}
		dir = fd;
		part = next;
	}
	errno = ENOENT; /* only slashes */
	return (-1);
}

int
data_dir_open_file(const data_dir *d, const char *name)
{
	size_t          n = strlen(d->d_path);
	struct open_how how = {
		.flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
	};
	long fd;

	if (name[0] == '/') {
		/* Absolute: only under the directory's canonical path. */
		if (strncmp(name, d->d_path, n) != 0 || name[n] != '/') {
			errno = EXDEV;
			return (-1);
		}
		name += n + 1;
	}
	fd = syscall(SYS_openat2, d->d_fd, name, &how, sizeof(how));
	if (fd < 0 && (errno == ENOSYS || errno == EPERM)) {
		return (open_walking(d, name));
	}
	return ((int) fd);
}
