/*
 * The topicfs program:
 *
 *   topicfs [-f] [-d] [-o OPT[,OPT...]] DATADIR MOUNTPOINT
 *   topicfs dump-log [--verify] PATH
 *   topicfs --help | --version
 *
 * Mounting: check everything that can fail (options, data directory lock,
 * mountpoint) before mounting, mount, then daemonize, then start threads
 * (fork keeps only the calling thread). On SIGTERM, SIGINT or
 * `fusermount3 -u` the loop ends and every partition is closed cleanly.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "dump.h"
#include "fs.h"
#include "groups_cmd.h"
#include "msg.h"
#include "broker.h"
#include "clock.h"

#ifndef TOPICFS_VERSION
#define TOPICFS_VERSION "0.1.0"
#endif

/* How often retention and periodic flushes run. */
#define TICK_MS 1000
/* Mode bits taken from every file without -o umask: others may read. */
#define UMASK_DEFAULT 022
/* Threads serving FUSE requests, at most. */
#define LOOP_THREADS_MAX 16
/* The background scrub of stored batches starts this long after mount, */
#define SCRUB_DELAY_MS 5000
/* and passes again this often (batches written since, segments checked
 * too long ago), each pass reading only what it has not checked. */
#define SCRUB_PASS_MS 60000
/* The scrub reads this much between two looks at its rate limit. */
#define SCRUB_CHUNK_BYTES (1u << 20)
/* Defaults of -o log.scrub.io.max.bytes.per.second and
 * log.scrub.interval.ms (7 days, as Ceph's osd_deep_scrub_interval). */
#define SCRUB_RATE_DEFAULT (32ull << 20)
#define SCRUB_INTERVAL_MS_DEFAULT (7ll * 24 * 3600 * 1000)

struct options {
	char *datadir;
	char *mountpoint;
	unsigned num_partitions;
	unsigned max_partition_fds; /* -o max.partition.fds=, 0: default */
	unsigned max_read;      /* the user's -o max_read, or 0 */
	unsigned uid, gid, umask; /* -o uid=, gid=, umask= (vfat's names) */
	int set_uid, set_gid, set_umask;
	uint64_t scrub_rate;    /* bytes per second, 0: no scrub */
	uint64_t scrub_interval_ms;
	int help;
	int version;
};

enum { KEY_HELP, KEY_VERSION, KEY_UID, KEY_GID, KEY_UMASK, KEY_PARTITION_FDS,
       KEY_SCRUB_RATE, KEY_SCRUB_INTERVAL };

static const struct fuse_opt option_spec[] = {
	{ "num.partitions=%u", offsetof(struct options, num_partitions), 0 },
	FUSE_OPT_KEY("max.partition.fds=", KEY_PARTITION_FDS),
	/* Read, and left for libfuse, which needs it too. */
	{ "max_read=%u", offsetof(struct options, max_read), 0 },
	FUSE_OPT_KEY("max_read=", FUSE_OPT_KEY_KEEP),
	FUSE_OPT_KEY("uid=", KEY_UID),
	FUSE_OPT_KEY("gid=", KEY_GID),
	FUSE_OPT_KEY("umask=", KEY_UMASK),
	FUSE_OPT_KEY("log.scrub.io.max.bytes.per.second=", KEY_SCRUB_RATE),
	FUSE_OPT_KEY("log.scrub.interval.ms=", KEY_SCRUB_INTERVAL),
	FUSE_OPT_KEY("-h", KEY_HELP),
	FUSE_OPT_KEY("--help", KEY_HELP),
	FUSE_OPT_KEY("-V", KEY_VERSION),
	FUSE_OPT_KEY("--version", KEY_VERSION),
	FUSE_OPT_END
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: topicfs [-f] [-d] [-o OPT[,OPT...]] DATADIR MOUNTPOINT\n"
		"       topicfs dump-log [--verify] PATH\n"
		"       topicfs groups MOUNTPOINT [GROUP]\n"
		"       topicfs groups --list MOUNTPOINT\n"
		"       topicfs --help | --version\n"
		"\n"
		"Serves the topics stored in DATADIR (created if missing) as\n"
		"directories under MOUNTPOINT; partitions are append-only files.\n"
		"\n"
		"  -f                   stay in the foreground, log to stderr\n"
		"  -d                   libfuse debug output (implies -f)\n"
		"  -o num.partitions=N  partitions of a new topic (default 1)\n"
		"  -o max.partition.fds=N  descriptors partitions keep open;\n"
		"                       idle ones are closed beyond it (default:\n"
		"                       the descriptor limit less a quarter)\n"
		"  -o uid=N,gid=N       owner and group of every file (default:\n"
		"                       the user who mounts)\n"
		"  -o umask=OOO         mode bits taken away (default 022: others\n"
		"                       may only read); the kernel checks them\n"
		"  -o log.scrub.io.max.bytes.per.second=N\n"
		"                       how fast the background scrub reads\n"
		"                       stored data (default 33554432; 0: no\n"
		"                       scrub)\n"
		"  -o log.scrub.interval.ms=N\n"
		"                       check data again this long after its\n"
		"                       last check (default 604800000, 7 days)\n"
		"  -o allow_other,...   the usual FUSE mount options\n"
		"\n"
		"dump-log prints one line per record batch of a segment file or\n"
		"of every segment in a partition directory; --verify also checks\n"
		"the index files and exits 1 if anything is bad.\n"
		"\n"
		"groups prints the consumer groups of a mounted topicfs like\n"
		"kafka-consumer-groups --describe; --list prints their names.\n"
		"\n"
		"See topicfs(8).\n"
		"\n"
		"Unmount with: fusermount3 -u MOUNTPOINT\n");
}

/*
 * The value of "name=value" as a number in base, strictly (libfuse's
 * "%u" would take "12abc" as 12): digits only, at most max.
 */
static int option_number(const char *arg, int base, unsigned long max,
			 unsigned *out)
{
	const char *v = strchr(arg, '=') + 1;
	unsigned long n;
	char *end;

	if (*v < '0' || *v > '9')
		return -1;
	errno = 0;
	n = strtoul(v, &end, base);
	if (errno || *end || n > max)
		return -1;
	*out = (unsigned)n;
	return 0;
}

/* The same for a 64-bit value from min to max. */
static int option_u64(const char *arg, uint64_t min, uint64_t max,
		      uint64_t *out)
{
	const char *v = strchr(arg, '=') + 1;
	unsigned long long n;
	char *end;

	if (*v < '0' || *v > '9')
		return -1;
	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno || *end || n < min || n > max)
		return -1;
	*out = n;
	return 0;
}

static int option_proc(void *data, const char *arg, int key,
		       struct fuse_args *outargs)
{
	struct options *o = data;

	(void)outargs;
	switch (key) {
	case KEY_UID:
	case KEY_GID:
		/* (uid_t)-1 means "no change" to chown: not an owner. */
		if (option_number(arg, 10, (uid_t)-1 - 1,
				  key == KEY_UID ? &o->uid : &o->gid) < 0) {
			fprintf(stderr, "topicfs: -o %s: must be a number "
				"below %u\n", arg, (unsigned)(uid_t)-1);
			return -1;
		}
		*(key == KEY_UID ? &o->set_uid : &o->set_gid) = 1;
		return 0;
	case KEY_UMASK:
		if (option_number(arg, 8, 0777, &o->umask) < 0) {
			fprintf(stderr, "topicfs: -o %s: must be octal, 000 to "
				"777\n", arg);
			return -1;
		}
		o->set_umask = 1;
		return 0;
	case KEY_PARTITION_FDS:
		if (option_number(arg, 10, UINT_MAX, &o->max_partition_fds) < 0 ||
		    o->max_partition_fds < PARTITION_FDS_MIN) {
			fprintf(stderr, "topicfs: -o %s: must be a number, at "
				"least %u\n", arg, PARTITION_FDS_MIN);
			return -1;
		}
		return 0;
	case KEY_SCRUB_RATE:
		if (option_u64(arg, 0, UINT64_MAX / 1000, &o->scrub_rate) < 0) {
			fprintf(stderr, "topicfs: -o %s: must be a number of "
				"bytes per second (0: no scrub)\n", arg);
			return -1;
		}
		return 0;
	case KEY_SCRUB_INTERVAL:
		if (option_u64(arg, 1, INT64_MAX, &o->scrub_interval_ms) < 0) {
			fprintf(stderr, "topicfs: -o %s: must be a number of "
				"milliseconds, at least 1\n", arg);
			return -1;
		}
		return 0;
	case KEY_HELP:
		o->help = 1;
		return 0;
	case KEY_VERSION:
		o->version = 1;
		return 0;
	case FUSE_OPT_KEY_NONOPT:
		if (!o->datadir) {
			o->datadir = strdup(arg);
			return 0;
		}
		if (!o->mountpoint) {
			o->mountpoint = strdup(arg);
			return 1; /* fuse_parse_cmdline takes it too */
		}
		fprintf(stderr, "topicfs: unexpected argument '%s'\n", arg);
		return -1;
	default:
		return 1;
	}
}

static void dump_log_usage(FILE *out)
{
	fprintf(out,
		"usage: topicfs dump-log [--verify] PATH\n"
		"\n"
		"Prints one line per record batch of a segment file, or of every\n"
		"segment of a partition directory (DATADIR/topics/<t>/<p>),\n"
		"checking each batch's checksum. Read-only: safe on the data of a\n"
		"live mount.\n"
		"\n"
		"  --verify    also check the index files; exit 1 if anything is bad\n"
		"  -h, --help  this text\n");
}

static int cmd_dump_log(int argc, char **argv)
{
	bool verify = false;
	const char *path = NULL;
	int bad;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			dump_log_usage(stdout);
			return 0;
		}
		if (strcmp(argv[i], "--verify") == 0)
			verify = true;
		else if (!path && argv[i][0] != '-')
			path = argv[i];
		else {
			fprintf(stderr, "topicfs dump-log: unexpected argument '%s'\n",
				argv[i]);
			return 2;
		}
	}
	if (!path) {
		dump_log_usage(stderr);
		return 2;
	}
	bad = log_dump(path, verify, stdout);
	if (bad < 0) {
		fprintf(stderr, "topicfs dump-log: %s: %s\n", path,
			bad == -EINVAL ? "not a partition directory or segment file"
				       : strerror(-bad));
		return 2;
	}
	if (bad > 0)
		fprintf(stderr, "topicfs dump-log: %s: %d bad batch(es) or index "
			"entries\n", path, bad);
	return bad > 0 && verify ? 1 : 0;
}

/* ---- logging ------------------------------------------------------------ */

static void engine_logger(int priority, const char *m, void *arg)
{
	(void)arg;
	msg(priority, "%s", m);
}

/*
 * libfuse builds some messages from several calls; collect the pieces and
 * log one line per newline.
 */
static void fuse_logger(enum fuse_log_level level, const char *fmt, va_list ap)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static char line[1024];
	static size_t len;
	char *nl;

	pthread_mutex_lock(&lock);
	vsnprintf(line + len, sizeof(line) - len, fmt, ap);
	len = strlen(line);
	while ((nl = strchr(line, '\n')) || len == sizeof(line) - 1) {
		size_t take = nl ? (size_t)(nl - line) : len;
		line[take] = '\0';
		if (take > 0)
			msg((int)level, "%s", line);
		len -= nl ? take + 1 : take;
		memmove(line, line + take + (nl ? 1 : 0), len + 1);
	}
	pthread_mutex_unlock(&lock);
}

/* ---- background work ---------------------------------------------------- */

struct ticker {
	struct broker *broker;
	pthread_t thread;          /* ticker_main */
	pthread_t scrubber;        /* scrub_main */
	bool scrubber_started;
	uint64_t scrub_rate;       /* bytes per second; 0: no scrubber */
	int64_t scrub_interval_ms; /* log.scrub.interval.ms */
	int64_t pace_ms;           /* (scrubber) the pass's pacing began */
	uint64_t pace_bytes;       /* (scrubber) read since pace_ms */
	pthread_mutex_t lock;
	pthread_cond_t cond;       /* on CLOCK_MONOTONIC; signalled at stop */
	bool stop;
};

/* Wait on tk->cond until ms from now on the monotonic clock or the stop;
 * called and returns with tk->lock held. */
static void ticker_wait(struct ticker *tk, int64_t ms)
{
	struct timespec until;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_nsec += ms % 1000 * 1000000L;
	until.tv_sec += ms / 1000 + until.tv_nsec / 1000000000L;
	until.tv_nsec %= 1000000000L;
	pthread_cond_timedwait(&tk->cond, &tk->lock, &until);
}

/*
 * Retention, flushes and evictions every TICK_MS, on the monotonic clock
 * (a step of the wall clock neither hurries nor stalls it). The scrub is
 * not done here: it has its own thread, so it never delays a tick.
 */
static void *ticker_main(void *arg)
{
	struct ticker *tk = arg;
	struct tick_now now;

	pthread_mutex_lock(&tk->lock);
	while (!tk->stop) {
		ticker_wait(tk, TICK_MS);
		if (tk->stop)
			break;
		pthread_mutex_unlock(&tk->lock);
		now = clock_now();
		broker_tick(tk->broker, &now);
		pthread_mutex_lock(&tk->lock);
	}
	pthread_mutex_unlock(&tk->lock);
	return NULL;
}

/* Wait until the monotonic clock reaches until, or the stop; whether
 * to go on. */
static bool ticker_sleep_until(struct ticker *tk, int64_t until)
{
	bool stop;

	pthread_mutex_lock(&tk->lock);
	while (!tk->stop && clock_mono_ms() < until)
		ticker_wait(tk, until - clock_mono_ms());
	stop = tk->stop;
	pthread_mutex_unlock(&tk->lock);
	return !stop;
}

/*
 * The scrub's rate limit (log_scrub_ctl's pace): having read bytes more,
 * wait until reading them at scrub_rate would have taken this long since
 * the pass began, banking at most a second of unused time (a pass that
 * found little to read does not then read in a burst). False at the
 * stop, at once, even in the middle of a wait.
 */
static bool scrub_pace(uint64_t bytes, void *arg)
{
	struct ticker *tk = arg;
	int64_t now = clock_mono_ms(), due;

	tk->pace_bytes += bytes;
	due = tk->pace_ms + (int64_t)(tk->pace_bytes * 1000 / tk->scrub_rate);
	if (now - due > 1000)
		tk->pace_ms += now - due - 1000;
	return ticker_sleep_until(tk, due);
}

/*
 * The background scrub, in its own thread so that ticks go on meanwhile:
 * a pass over every partition SCRUB_DELAY_MS (monotonic) after the mount
 * and every SCRUB_PASS_MS after that, each reading only what no earlier
 * pass (of this mount or an earlier one) has checked, at scrub_rate.
 */
static void *scrub_main(void *arg)
{
	struct ticker *tk = arg;
	struct log_scrub_ctl ctl = {
		.recheck_ms = tk->scrub_interval_ms,
		.chunk_bytes = SCRUB_CHUNK_BYTES,
		.pace = scrub_pace,
		.arg = tk,
	};
	int64_t next = clock_mono_ms() + SCRUB_DELAY_MS;

	while (ticker_sleep_until(tk, next)) {
		ctl.now_ms = clock_wall_ms();
		tk->pace_ms = clock_mono_ms();
		tk->pace_bytes = 0;
		broker_scrub(tk->broker, &ctl);
		next = clock_mono_ms() + SCRUB_PASS_MS;
	}
	return NULL;
}

/* Start the ticker and the scrubber: -1 if the ticker could not start
 * (without a scrubber the mount only goes unscrubbed: one log line). */
static int ticker_start(struct ticker *tk, struct broker *broker,
			const struct options *o)
{
	pthread_condattr_t ca;

	tk->broker = broker;
	tk->scrub_rate = o->scrub_rate;
	tk->scrub_interval_ms = (int64_t)o->scrub_interval_ms;
	pthread_mutex_init(&tk->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&tk->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&tk->thread, NULL, ticker_main, tk) != 0)
		return -1;
	if (tk->scrub_rate == 0)
		msg(LOG_INFO, "log.scrub.io.max.bytes.per.second=0: stored "
		    "data is not scrubbed");
	else if (pthread_create(&tk->scrubber, NULL, scrub_main, tk) == 0)
		tk->scrubber_started = true;
	else
		msg(LOG_WARNING, "cannot start the scrub thread: "
		    "this mount is not scrubbed");
	return 0;
}

static void ticker_stop(struct ticker *tk)
{
	pthread_mutex_lock(&tk->lock);
	tk->stop = true;
	pthread_cond_broadcast(&tk->cond);
	pthread_mutex_unlock(&tk->lock);
	pthread_join(tk->thread, NULL);
	if (tk->scrubber_started)
		pthread_join(tk->scrubber, NULL);
}

/* systemd Type=notify: one datagram to $NOTIFY_SOCKET. */
static void notify_ready(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (!path || strlen(path) >= sizeof(sa.sun_path))
		return;
	strcpy(sa.sun_path, path);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0';
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	sendto(fd, "READY=1", 7, 0, (struct sockaddr *)&sa,
	       (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path)));
	close(fd);
}

/* ---- mounting ------------------------------------------------------------ */

/*
 * Raise the soft descriptor limit to the hard one: every partition
 * holds descriptors while in use, and the default soft limit (often
 * 1024) is far below what a mount of thousands of partitions may need.
 * The partitions' budget (max.partition.fds) is derived from the raised
 * limit. One log line if it cannot be raised.
 */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		msg(LOG_WARNING, "cannot raise the descriptor limit to %llu: %s",
		    (unsigned long long)rl.rlim_max, strerror(errno));
}

/*
 * Undo the kernel's escaping of a /proc/self/mountinfo field in place:
 * space, tab, newline and backslash appear there as \040, \011, \012 and
 * \134 (octal).
 */
static void mountinfo_unescape(char *s)
{
	char *out = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' &&
		    s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*out++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 +
					(s[3] - '0'));
			s += 3;
		} else {
			*out++ = *s;
		}
	}
	*out = '\0';
}

/* One line of /proc/self/mountinfo, its fields unescaped in place. */
struct mount_entry {
	char *point;    /* field 5 */
	char *type;     /* after the "-" that ends the optional fields */
	char *source;
};

/* Split a mountinfo line (changed in place); false if it is malformed. */
static bool mountinfo_parse(char *line, struct mount_entry *e)
{
	char *save = NULL, *f = strtok_r(line, " \n", &save);
	bool dash = false;

	memset(e, 0, sizeof(*e));
	for (int i = 0; f; f = strtok_r(NULL, " \n", &save), i++) {
		if (i == 4)
			e->point = f;
		else if (i > 5 && !dash && strcmp(f, "-") == 0)
			dash = true;
		else if (dash && !e->type)
			e->type = f;
		else if (dash && !e->source)
			e->source = f;
	}
	if (!e->point || !e->type || !e->source)
		return false;
	mountinfo_unescape(e->point);
	mountinfo_unescape(e->type);
	mountinfo_unescape(e->source);
	return true;
}

/*
 * Find a mount in /proc/self/mountinfo: the one on point (if not NULL),
 * else a topicfs whose source (its fsname: the DATADIR it serves) is
 * source. If found, its mount point is copied to found (size bytes).
 */
static bool mountinfo_find(const char *point, const char *source,
			   char *found, size_t size)
{
	struct mount_entry e;
	char *line = NULL;
	size_t cap = 0;
	bool hit = false;
	FILE *f;

	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return false;
	while (!hit && getline(&line, &cap, f) > 0) {
		if (!mountinfo_parse(line, &e))
			continue;
		if (point)
			hit = strcmp(e.point, point) == 0;
		else
			hit = strcmp(e.type, "fuse.topicfs") == 0 &&
			      strcmp(e.source, source) == 0;
		if (hit && found)
			snprintf(found, size, "%s", e.point);
	}
	free(line);
	fclose(f);
	return hit;
}

/* Is path already a mount point (in /proc/self/mountinfo)? */
static bool is_mounted(const char *path)
{
	char real[PATH_MAX];

	if (!realpath(path, real))
		return false;
	return mountinfo_find(real, NULL, NULL, 0);
}

static int check_mountpoint(const char *mp)
{
	struct stat st;

	if (stat(mp, &st) < 0) {
		if (errno == ENOTCONN)
			fprintf(stderr, "topicfs: %s: a dead topicfs is still "
				"mounted here; run 'fusermount3 -u %s' first\n",
				mp, mp);
		else
			fprintf(stderr, "topicfs: mountpoint %s: %s\n", mp,
				strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "topicfs: mountpoint %s: not a directory\n", mp);
		return -1;
	}
	if (is_mounted(mp)) {
		struct statfs sf;
		/* stat() may be answered from the kernel's cache; statfs()
		 * always asks the filesystem, and a dead FUSE one says so. */
		if (statfs(mp, &sf) < 0 && errno == ENOTCONN)
			fprintf(stderr, "topicfs: %s: a dead topicfs is still "
				"mounted here; run 'fusermount3 -u %s' first\n",
				mp, mp);
		else
			fprintf(stderr, "topicfs: mountpoint %s: something is "
				"already mounted there\n", mp);
		return -1;
	}
	return 0;
}

/*
 * After `fusermount3 -u` the kernel forgets the mount at once, but the
 * daemon still holds DATADIR's lock while it flushes and closes every
 * partition; a new mount of the same DATADIR waits for that, this long
 * at most, looking again every DATADIR_POLL_MS.
 */
#define DATADIR_WAIT_MS 30000
#define DATADIR_POLL_MS 50

/*
 * broker_open, waiting for a previous daemon of the same DATADIR that is
 * shutting down. A locked DATADIR that a topicfs in this mount namespace
 * serves (its mount source is the DATADIR, see fsname in run) is a live
 * mount: refused at once. A locked one that none serves belongs to a
 * daemon whose mount is gone, which is finishing its clean shutdown:
 * wait for its lock, saying so in one line, up to DATADIR_WAIT_MS.
 * Prints the refusal; returns 0 or a negative errno.
 */
static int open_broker(const struct broker_opts *bo, struct broker **out)
{
	char real[PATH_MAX], mnt[PATH_MAX];
	bool told = false;
	int err;

	for (int tries = 0;; tries++) {
		err = broker_open(bo, out);
		if (err != -EBUSY)
			break;
		if (!realpath(bo->datadir, real))
			snprintf(real, sizeof(real), "%s", bo->datadir);
		if (mountinfo_find(NULL, real, mnt, sizeof(mnt))) {
			fprintf(stderr, "topicfs: data directory %s: in use by "
				"another topicfs mount on %s\n", bo->datadir, mnt);
			return err;
		}
		if (tries == DATADIR_WAIT_MS / DATADIR_POLL_MS) {
			fprintf(stderr, "topicfs: data directory %s: still in use "
				"after %d s by a topicfs not mounted here (still "
				"shutting down, or mounted in another mount "
				"namespace)\n", bo->datadir, DATADIR_WAIT_MS / 1000);
			return err;
		}
		if (!told) {
			fprintf(stderr, "topicfs: data directory %s: waiting up "
				"to %d s for the previous topicfs to finish "
				"shutting down\n", bo->datadir,
				DATADIR_WAIT_MS / 1000);
			told = true;
		}
		nanosleep(&(struct timespec){ 0, DATADIR_POLL_MS * 1000000L },
			  NULL);
	}
	if (err < 0)
		fprintf(stderr, "topicfs: data directory %s: %s\n", bo->datadir,
			strerror(-err));
	return err;
}

/*
 * Mount options topicfs always adds: the DATADIR as the source that
 * findmnt, df and mount show (escaped for libfuse's option parser), and
 * default_permissions, so that the kernel checks every access against
 * the owner, group and mode that node_stat reports (MOUNTING.md,
 * Security).
 */
static int add_mount_options(struct fuse_args *args, const char *datadir)
{
	char *opts = NULL, *fsname;
	int rc = -ENOMEM;

	if (asprintf(&fsname, "fsname=%s", datadir) < 0)
		return -ENOMEM;
	if (fuse_opt_add_opt_escaped(&opts, fsname) == 0 &&
	    fuse_opt_add_opt(&opts, "default_permissions") == 0 &&
	    fuse_opt_add_arg(args, "-o") == 0 &&
	    fuse_opt_add_arg(args, opts) == 0)
		rc = 0;
	free(opts);
	free(fsname);
	return rc;
}

static int run(struct options *o, struct fuse_args *args,
	       struct fuse_cmdline_opts *co)
{
	struct broker_opts bo = {
		.datadir = o->datadir,
		.num_partitions = o->num_partitions,
		.max_partition_fds = o->max_partition_fds,
	};
	struct fs_perms perms = {
		.uid = o->set_uid ? (uid_t)o->uid : getuid(),
		.gid = o->set_gid ? (gid_t)o->gid : getgid(),
		.umask = o->set_umask ? (mode_t)o->umask : UMASK_DEFAULT,
	};
	struct ticker tk = { 0 };
	struct fuse_session *se = NULL;
	struct fuse_loop_config *lc;
	struct broker *broker = NULL;
	struct fs *fs = NULL;
	int rc = 1;

	if (check_mountpoint(co->mountpoint) < 0)
		return 1;
	raise_fd_limit();
	if (open_broker(&bo, &broker) < 0)
		return 1;
	if (add_mount_options(args, broker_datadir(broker)) < 0)
		goto out_broker;
	if (o->max_read == 0) { /* libfuse wants the same in init */
		char opt[32];
		o->max_read = FS_MAX_READ;
		snprintf(opt, sizeof(opt), "-omax_read=%u", o->max_read);
		if (fuse_opt_add_arg(args, opt) != 0)
			goto out_broker;
	}
	if (fs_new(broker, o->max_read, &perms, &fs) < 0)
		goto out_broker;
	se = fuse_session_new(args, fs_ops(), sizeof(*fs_ops()), fs);
	if (!se)
		goto out_fs; /* libfuse printed why (e.g. an unknown option) */
	if (fuse_set_signal_handlers(se) != 0)
		goto out_session;
	if (fuse_session_mount(se, co->mountpoint) != 0)
		goto out_signals;
	if (fuse_daemonize(co->foreground) != 0)
		goto out_unmount;
	if (!co->foreground)
		msg_use_syslog(true);
	msg(LOG_INFO, "serving %s on %s", o->datadir, co->mountpoint);

	if (ticker_start(&tk, broker, o) < 0)
		goto out_unmount;
	notify_ready();
	lc = fuse_loop_cfg_create();
	fuse_loop_cfg_set_clone_fd(lc, co->clone_fd);
	fuse_loop_cfg_set_max_threads(lc, LOOP_THREADS_MAX);
	if (co->max_idle_threads != UINT_MAX) /* UINT_MAX: not given */
		fuse_loop_cfg_set_idle_threads(lc, co->max_idle_threads);
	/* The loop returns the signal number after SIGTERM/SIGINT: that is
	 * a clean stop, like fusermount3 -u. */
	rc = fuse_session_loop_mt(se, lc) < 0;
	fuse_loop_cfg_destroy(lc);
	ticker_stop(&tk);
	msg(LOG_INFO, "unmounting %s", co->mountpoint);

out_unmount:
	fs_flush_open_files(fs);
	broker_settle(broker);
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out_fs:
	fs_free(fs);
out_broker:
	if (broker_close(broker) < 0)
		rc = 1;
	return rc;
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct options o = { .num_partitions = 1,
			     .scrub_rate = SCRUB_RATE_DEFAULT,
			     .scrub_interval_ms = SCRUB_INTERVAL_MS_DEFAULT };
	struct fuse_cmdline_opts co;
	int rc = 1;

	if (argc >= 2 && strcmp(argv[1], "dump-log") == 0)
		return cmd_dump_log(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "groups") == 0)
		return cmd_groups(argc - 1, argv + 1);
	log_set_logger(engine_logger, NULL);
	fuse_set_log_func(fuse_logger);
	if (fuse_opt_parse(&args, &o, option_spec, option_proc) != 0)
		goto out;
	if (o.help) {
		usage(stdout);
		rc = 0;
		goto out;
	}
	if (o.version) {
		printf("topicfs %s (libfuse %s)\n", TOPICFS_VERSION,
		       fuse_pkgversion());
		rc = 0;
		goto out;
	}
	if (!o.datadir || !o.mountpoint) {
		fprintf(stderr, "topicfs: missing %s (see topicfs --help)\n",
			o.datadir ? "MOUNTPOINT" : "DATADIR and MOUNTPOINT");
		goto out;
	}
	if (o.num_partitions < 1 || o.num_partitions > TOPIC_PARTITIONS_MAX) {
		fprintf(stderr, "topicfs: num.partitions must be 1 to %u\n",
			TOPIC_PARTITIONS_MAX);
		goto out;
	}
	/* The type findmnt shows is fuse.topicfs whatever the program's
	 * name; the source (fsname) is added once DATADIR is resolved. */
	if (fuse_opt_add_arg(&args, "-osubtype=topicfs") != 0)
		goto out;
	if (fuse_parse_cmdline(&args, &co) != 0)
		goto out;
	if (!co.mountpoint) {
		usage(stderr);
	} else {
		rc = run(&o, &args, &co);
	}
	free(co.mountpoint);
out:
	free(o.datadir);
	free(o.mountpoint);
	fuse_opt_free_args(&args);
	return rc;
}
