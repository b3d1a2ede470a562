/* The evaluation trace: preloaded (LD_PRELOAD) into the Nix processes that
 * evaluate a network, it records every file access and environment lookup
 * Nix makes through libc, so that the evaluation cache keys a machine on
 * exactly what its evaluation could observe (see trace.rs). Nix reports
 * none of readFile, readDir, pathExists, getEnv, ... itself.
 *
 * Records go to the file named by NIXOPS_EVAL_TRACE, one write(2) each (so
 * none is lost if the process dies, and threads do not interleave), as a
 * kind letter, the path or name, and a NUL:
 *   H pid          the trace is active (written first)
 *   C dir          the working directory, for relative paths
 *   O path         opened for reading (the content reached counts)
 *   S path         stat, access, realpath: follows links
 *   L path         lstat, readlink: the link itself
 *   D path         a directory listed
 *   E name         an environment variable looked up
 *   X path         a program executed (git, a builder, ...)
 *   N inet|path    a network or unix socket connected
 * Only calls through the dynamic linker are seen: libc's own internal file
 * accesses (locales, NSS) are not Nix's evaluation and are not recorded. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <dirent.h>
#include <unistd.h>

static int trace_fd = -2; /* -2: not opened yet; -1: off */
static __thread int busy; /* inside a hook: record nothing more */

/* The real function, found on first use (a hook may run before init). */
#define REAL(name) \
	static __typeof__(name) *real_##name; \
	static __typeof__(name) *resolve_##name(void) \
	{ \
		if (!real_##name) \
			real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name); \
		return real_##name; \
	}
#define RESOLVE(name) resolve_##name()

REAL(open) REAL(open64) REAL(openat) REAL(openat64) REAL(stat) REAL(stat64) REAL(lstat)
REAL(lstat64) REAL(fstatat) REAL(fstatat64) REAL(access) REAL(faccessat) REAL(opendir)
REAL(fdopendir) REAL(readlink) REAL(readlinkat) REAL(realpath) REAL(getenv)
REAL(secure_getenv) REAL(execve) REAL(execv) REAL(execvp) REAL(execvpe) REAL(posix_spawn)
REAL(posix_spawnp) REAL(connect) REAL(fopen) REAL(fopen64)

static void put(char kind, const char *a, const char *b);

/* Writes n in decimal to out (at least 21 bytes). */
static void decimal(char *out, unsigned long n)
{
	char digits[21];
	int i = 0;
	do
		digits[i++] = (char)('0' + n % 10);
	while (n /= 10);
	while (i)
		*out++ = digits[--i];
	*out = 0;
}

static void start(void)
{
	if (trace_fd != -2)
		return;
	trace_fd = -1;
	const char *file = RESOLVE(getenv)("NIXOPS_EVAL_TRACE");
	if (!file || !*file)
		return;
	int fd = RESOLVE(open)(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	trace_fd = fd;
	char pid[24], cwd[PATH_MAX];
	decimal(pid, (unsigned long)getpid());
	put('H', pid, 0);
	if (getcwd(cwd, sizeof cwd))
		put('C', cwd, 0);
}

__attribute__((constructor)) static void init(void)
{
	int saved = errno;
	busy++;
	start();
	busy--;
	errno = saved;
}

/* One record: kind, a, b joined (b: a name relative to directory a). */
static void put(char kind, const char *a, const char *b)
{
	char buf[2 * PATH_MAX + 4];
	size_t n = 0;
	buf[n++] = kind;
	size_t la = strlen(a), lb = b ? strlen(b) : 0;
	if (la > PATH_MAX)
		la = PATH_MAX;
	if (lb > PATH_MAX)
		lb = PATH_MAX;
	memcpy(buf + n, a, la);
	n += la;
	if (b) {
		buf[n++] = '/';
		memcpy(buf + n, b, lb);
		n += lb;
	}
	buf[n++] = 0;
	ssize_t w = write(trace_fd, buf, n);
	(void)w;
}

static int on(void)
{
	if (busy)
		return 0;
	start();
	return trace_fd >= 0;
}

/* A path relative to a directory descriptor: that directory's own path. */
static void put_at(char kind, int dirfd, const char *path)
{
	if (path[0] == '/' || dirfd == AT_FDCWD) {
		put(kind, path, 0);
		return;
	}
	char link[64] = "/proc/self/fd/", dir[PATH_MAX];
	decimal(link + strlen(link), (unsigned long)dirfd);
	ssize_t l = RESOLVE(readlink)(link, dir, sizeof dir - 1);
	if (l <= 0)
		return;
	dir[l] = 0;
	put(kind, dir, path[0] ? path : 0);
}

#define HOOK_BEGIN int saved_errno; int tracing = on(); busy++;
#define HOOK_END(record) \
	saved_errno = errno; \
	if (tracing) { record; } \
	busy--; errno = saved_errno;

/* What an open reads: nothing (write only), the type (a directory or a
 * handle), or the content. */
static char open_kind(int flags)
{
	if ((flags & O_ACCMODE) == O_WRONLY)
		return 0;
	return (flags & (O_DIRECTORY | O_PATH)) ? 'S' : 'O';
}

#define OPEN_BODY(fn, ...) \
	mode_t mode = 0; \
	if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) { \
		va_list ap; \
		va_start(ap, flags); \
		mode = va_arg(ap, mode_t); \
		va_end(ap); \
	} \
	HOOK_BEGIN \
	int r = RESOLVE(fn)(__VA_ARGS__, flags, mode); \
	char k = open_kind(flags);

int open(const char *path, int flags, ...)
{
	OPEN_BODY(open, path)
	HOOK_END(if (k) put(k, path, 0))
	return r;
}

int open64(const char *path, int flags, ...)
{
	OPEN_BODY(open64, path)
	HOOK_END(if (k) put(k, path, 0))
	return r;
}

int openat(int dirfd, const char *path, int flags, ...)
{
	OPEN_BODY(openat, dirfd, path)
	HOOK_END(if (k) put_at(k, dirfd, path))
	return r;
}

int openat64(int dirfd, const char *path, int flags, ...)
{
	OPEN_BODY(openat64, dirfd, path)
	HOOK_END(if (k) put_at(k, dirfd, path))
	return r;
}

/* _FORTIFY_SOURCE's checked open. */
int __open_2(const char *path, int flags)
{
	return open(path, flags);
}

int __open64_2(const char *path, int flags)
{
	return open64(path, flags);
}

/* A hook: the real function, then the record (of its arguments). */
#define HOOK(ret, name, params, args, record) \
	ret name params \
	{ \
		HOOK_BEGIN \
		ret r = RESOLVE(name) args; \
		HOOK_END(record) \
		return r; \
	}

#define READS(mode) ((mode)[0] == 'r' || strchr((mode), '+'))

HOOK(FILE *, fopen, (const char *path, const char *mode), (path, mode), if (READS(mode)) put('O', path, 0))
HOOK(FILE *, fopen64, (const char *path, const char *mode), (path, mode), if (READS(mode)) put('O', path, 0))
HOOK(int, stat, (const char *path, struct stat *st), (path, st), put('S', path, 0))
HOOK(int, stat64, (const char *path, struct stat64 *st), (path, st), put('S', path, 0))
HOOK(int, lstat, (const char *path, struct stat *st), (path, st), put('L', path, 0))
HOOK(int, lstat64, (const char *path, struct stat64 *st), (path, st), put('L', path, 0))
/* An empty path with AT_EMPTY_PATH: the descriptor, opened before. */
HOOK(int, fstatat, (int dirfd, const char *path, struct stat *st, int flags), (dirfd, path, st, flags),
     if (path[0]) put_at((flags & AT_SYMLINK_NOFOLLOW) ? 'L' : 'S', dirfd, path))
HOOK(int, fstatat64, (int dirfd, const char *path, struct stat64 *st, int flags), (dirfd, path, st, flags),
     if (path[0]) put_at((flags & AT_SYMLINK_NOFOLLOW) ? 'L' : 'S', dirfd, path))
HOOK(int, access, (const char *path, int mode), (path, mode), put('S', path, 0))
HOOK(int, faccessat, (int dirfd, const char *path, int mode, int flags), (dirfd, path, mode, flags),
     put_at((flags & AT_SYMLINK_NOFOLLOW) ? 'L' : 'S', dirfd, path))
HOOK(DIR *, opendir, (const char *path), (path), put('D', path, 0))
HOOK(DIR *, fdopendir, (int fd), (fd), put_at('D', fd, ""))
HOOK(ssize_t, readlink, (const char *path, char *buf, size_t size), (path, buf, size), put('L', path, 0))
HOOK(ssize_t, readlinkat, (int dirfd, const char *path, char *buf, size_t size), (dirfd, path, buf, size),
     put_at('L', dirfd, path))
HOOK(char *, realpath, (const char *path, char *resolved), (path, resolved), put('S', path, 0))
HOOK(char *, getenv, (const char *name), (name), put('E', name, 0))
HOOK(char *, secure_getenv, (const char *name), (name), put('E', name, 0))

/* Running a program: its output cannot be known from files (fetchGit,
 * builds during evaluation). Recorded before it runs. */
#define EXEC_HOOK(fn, ...) \
	{ \
		if (on()) \
			put('X', path, 0); \
		return RESOLVE(fn)(__VA_ARGS__); \
	}

int execve(const char *path, char *const argv[], char *const envp[])
EXEC_HOOK(execve, path, argv, envp)
int execv(const char *path, char *const argv[])
EXEC_HOOK(execv, path, argv)
int execvp(const char *path, char *const argv[])
EXEC_HOOK(execvp, path, argv)
int execvpe(const char *path, char *const argv[], char *const envp[])
EXEC_HOOK(execvpe, path, argv, envp)

int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
		const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
EXEC_HOOK(posix_spawn, pid, path, fa, attr, argv, envp)
int posix_spawnp(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
		 const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
EXEC_HOOK(posix_spawnp, pid, path, fa, attr, argv, envp)

int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	if (on()) {
		busy++;
		if (addr && addr->sa_family == AF_UNIX) {
			const struct sockaddr_un *un = (const struct sockaddr_un *)addr;
			char path[sizeof un->sun_path + 1];
			memcpy(path, un->sun_path, sizeof un->sun_path);
			path[sizeof un->sun_path] = 0;
			put('N', path[0] ? path : "unix", 0);
		} else {
			put('N', "inet", 0);
		}
		busy--;
	}
	return RESOLVE(connect)(fd, addr, len);
}
