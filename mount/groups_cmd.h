/* `topicfs groups MNT [GROUP]`: kafka-consumer-groups --describe. */
#ifndef TOPICFS_MOUNT_GROUPS_CMD_H
#define TOPICFS_MOUNT_GROUPS_CMD_H

int cmd_groups(int argc, char **argv);

#endif
