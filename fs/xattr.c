/* Extended attributes: topic settings, partition state, groups. */
#include "adapter.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "grow.h"
#include "msg.h"
#include "partitioner.h"

/* ---- extended attributes ------------------------------------------------ */

static const char *const part_attrs[] = {
	"log_start_offset", "high_watermark", "log_end_offset",
	"recovery_point", "leader", "leader_epoch", "replicas", "isr",
	"log_start_position", "size_bytes", "segments",
};
#define PART_ATTRS (sizeof(part_attrs) / sizeof(part_attrs[0]))

int part_attr(struct part *p, const char *name, char *buf, size_t size)
{
	struct log_state st;

	log_get_state(part_log(p), &st);
	if (strcmp(name, "log_start_offset") == 0)
		snprintf(buf, size, "%" PRIu64, st.start_offset);
	else if (strcmp(name, "high_watermark") == 0)
		snprintf(buf, size, "%" PRIu64, st.hw);
	else if (strcmp(name, "log_end_offset") == 0)
		snprintf(buf, size, "%" PRIu64, st.leo);
	else if (strcmp(name, "recovery_point") == 0)
		snprintf(buf, size, "%" PRIu64, st.recovery_point);
	else if (strcmp(name, "leader") == 0 || strcmp(name, "replicas") == 0 ||
		 strcmp(name, "isr") == 0)
		snprintf(buf, size, "0");
	else if (strcmp(name, "leader_epoch") == 0)
		snprintf(buf, size, "%" PRIu32, st.leader_epoch);
	else if (strcmp(name, "log_start_position") == 0)
		snprintf(buf, size, "%" PRIu64, st.start_pos);
	else if (strcmp(name, "size_bytes") == 0)
		snprintf(buf, size, "%" PRIu64, st.size_bytes);
	else if (strcmp(name, "segments") == 0)
		snprintf(buf, size, "%" PRIu32, st.segments);
	else
		return -ENODATA;
	return 0;
}

/* Reply to getxattr/listxattr with value (len bytes) per the size rule. */
static void reply_xattr(fuse_req_t req, const char *value, size_t len,
			size_t size)
{
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, value, len);
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			size_t size)
{
	char value[XATTR_VALUE_MAX];
	struct topic_config cfg;
	struct node n;
	int rc;

	rc = node_get(fs_of(req), ino, &n);
	if (rc == 0 && strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) != 0)
		rc = -ENODATA;
	if (rc == 0) {
		const char *key = name + strlen(XATTR_PREFIX);
		if (n.kind == K_TOPIC) {
			topic_config(n.t, &cfg);
			rc = config_get(&cfg, key, value, sizeof(value));
		} else if (n.kind == K_PART) {
			rc = part_attr(topic_part(n.t, n.part), key, value,
				       sizeof(value));
		} else if (n.kind == K_GROUP) {
			rc = group_getxattr(n.g, key, value, sizeof(value));
		} else {
			rc = -ENODATA;
		}
	}
	node_put(&n);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		reply_xattr(req, value, strlen(value), size);
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	char *list = NULL;
	size_t len = 0, cap = 0;
	struct node n;
	int rc;

	rc = node_get(fs_of(req), ino, &n);
	if (rc == 0 && n.kind == K_GROUP) {
		rc = group_listxattr(n.g, &list, &len);
	} else if (rc == 0) {
		size_t count = n.kind == K_TOPIC ? config_count() :
			       n.kind == K_PART ? PART_ATTRS : 0;
		for (size_t i = 0; i < count && rc == 0; i++) {
			const char *key = n.kind == K_TOPIC ? config_name(i) :
					  part_attrs[i];
			size_t need = strlen(XATTR_PREFIX) + strlen(key) + 1;
			rc = grow(&list, &cap, len + need, 1);
			if (rc == 0) {
				sprintf(list + len, "%s%s", XATTR_PREFIX, key);
				len += need;
			}
		}
	}
	node_put(&n);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		reply_xattr(req, list, len, size);
	free(list);
}

/* Why an xattr change was refused, for its log line. */
static const char *xattr_cause(int rc)
{
	switch (rc) {
	case -EINVAL:
		return "not a valid value for it";
	case -ENODATA:
		return "no such setting here";
	case -EPERM:
		return "read-only state";
	default:
		return strerror(-rc);
	}
}

/* A value for a log line: at most size - 1 bytes, '?' for unprintable
 * ones, "..." where it was cut; a final newline (echo) left out. */
static const char *printable(const char *v, size_t len, char *buf,
			     size_t size)
{
	bool cut;

	if (len > 0 && v[len - 1] == '\n')
		len--;
	cut = len > size - 1;
	if (cut)
		len = size - 1;
	for (size_t i = 0; i < len; i++)
		buf[i] = v[i] >= 0x20 && v[i] < 0x7f ? v[i] : '?';
	if (cut)
		memcpy(buf + len - 3, "...", 3);
	buf[len] = '\0';
	return buf;
}

void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	const char *cause = NULL;
	struct node n;
	int rc;

	(void)flags;
	rc = node_get(fs_of(req), ino, &n);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	/* A name that is not a setting of this file: ENODATA (CONTRACT 7). */
	if (strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) != 0) {
		rc = -ENODATA;
		cause = "only user.topicfs.* attributes exist";
	} else if (n.kind == K_TOPIC) {
		rc = topic_config_set(n.t, name + strlen(XATTR_PREFIX), value,
				      size);
	} else if (n.kind == K_GROUP) {
		rc = group_setxattr(n.g, name + strlen(XATTR_PREFIX), value, size);
	} else if (n.kind == K_PART) {
		char tmp[64];
		rc = part_attr(topic_part(n.t, n.part),
			       name + strlen(XATTR_PREFIX), tmp, sizeof(tmp));
		rc = rc == 0 ? -EPERM : rc;
	} else {
		rc = -ENODATA;
		cause = "this file has no settings";
	}
	if (rc < 0) {
		char shown[80];
		refuse(req, &n, -rc, "setting %.200s to '%s' refused: %s", name,
		       printable(value, size, shown, sizeof(shown)),
		       cause ? cause : xattr_cause(rc));
	} else {
		fuse_reply_err(req, 0);
	}
	node_put(&n);
}

void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct node n;
	int rc;

	rc = node_get(fs_of(req), ino, &n);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (n.kind == K_TOPIC &&
	    strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) == 0)
		rc = topic_config_reset(n.t, name + strlen(XATTR_PREFIX));
	else if (n.kind == K_PART)
		rc = -EPERM;
	else
		rc = -ENODATA;
	if (rc < 0)
		refuse(req, &n, -rc, "removing %.200s refused: %s", name,
		       xattr_cause(rc));
	else
		fuse_reply_err(req, 0);
	node_put(&n);
}
