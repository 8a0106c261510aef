/*
 * kafka-dump-log for topicfs: print the batches of a segment or of every
 * segment in a partition directory, read-only, checking each one.
 */
#ifndef TOPICFS_LOG_DUMP_H
#define TOPICFS_LOG_DUMP_H

#include <stdbool.h>
#include <stdio.h>

/*
 * Dump path (a partition directory, or any one file of a segment). With
 * verify, index entries are checked too. Returns the number of bad batches
 * and index entries found, or a negative errno if path cannot be read.
 */
int log_dump(const char *path, bool verify, FILE *out);

#endif
