#include "msg.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static bool msg_syslog;

void msg_use_syslog(bool on)
{
	if (on && !msg_syslog)
		openlog("topicfs", LOG_PID, LOG_DAEMON);
	msg_syslog = on;
}

void msg(int priority, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* One event, one line: names from users may hold control bytes. */
	for (char *c = line; *c; c++) {
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
	}
	if (msg_syslog)
		syslog(priority, "%s", line);
	else
		fprintf(stderr, "topicfs: %s\n", line);
}
