/*
 * A helper of tests/bench/mount_bench.sh: touch BYTES of fresh memory and
 * free it again (bench_prefault), so that the page cache a timed run
 * fills comes from memory the host already backs. This VM hands freed
 * guest memory back to its host, and the first touch of such a page costs
 * a host fault; without this step whichever run came second in a round
 * was up to 8 times slower.
 *
 *   prefault BYTES
 */
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"

int main(int argc, char **argv)
{
	char *end;
	unsigned long long bytes;

	if (argc != 2 || (bytes = strtoull(argv[1], &end, 10), *end)) {
		fprintf(stderr, "usage: prefault BYTES\n");
		return 2;
	}
	bench_prefault(bytes);
	return 0;
}
