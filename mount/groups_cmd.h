/*
 * `topicfs groups [--list] MNT [GROUP]`: kafka-consumer-groups --describe
 * and --list for a mounted topicfs.
 */
#ifndef TOPICFS_MOUNT_GROUPS_CMD_H
#define TOPICFS_MOUNT_GROUPS_CMD_H

int cmd_groups(int argc, char **argv);

#endif
