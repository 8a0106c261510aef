/*
 * The daemon's log: one line per event, to stderr while in the
 * foreground, to syslog once daemonized. The log engine's and libfuse's
 * messages are routed here too.
 */
#ifndef TOPICFS_FS_MSG_H
#define TOPICFS_FS_MSG_H

#include <stdbool.h>
#include <syslog.h>

/* Switch to syslog (after daemonizing). */
void msg_use_syslog(bool on);

__attribute__((format(printf, 2, 3)))
void msg(int priority, const char *fmt, ...);

#endif
