# Shared by the benchmark scripts (run.sh, mount_bench.sh, groups_bench.sh),
# which source it. Each script owns one section of docs/PERFORMANCE.md,
# between the lines "<!-- MARK:begin -->" and "<!-- MARK:end -->", and may
# keep a hand-written analysis inside it between its own pair of markers.

# The command that reproduces this run: the settings given in the
# environment (names in the remaining arguments), then the script.
report_command() { # script, setting names...
	local script=$1 v cmd=""
	shift
	for v in "$@"; do
		if [[ -n "${!v:-}" ]]; then
			cmd+="$v=${!v} "
		fi
	done
	printf '%s%s' "$cmd" "$script"
}

# The hand-written block of doc between <!-- mark:begin --> and
# <!-- mark:end -->, markers included, or a placeholder to fill in.
report_analysis() { # doc, mark
	local doc=$1 mark=$2
	if [[ -f "$doc" ]] && grep -q "<!-- $mark:begin -->" "$doc"; then
		sed -n "/<!-- $mark:begin -->/,/<!-- $mark:end -->/p" "$doc"
	else
		printf '%s\n' "<!-- $mark:begin -->" \
			'(No analysis written yet: explain here what the figures mean.)' \
			"<!-- $mark:end -->"
	fi
}

# Put the section in file `section` into doc in place of the old one: from
# its begin marker, or from `heading` when the section starts with a
# heading line above the marker, to its end marker. Without an old section
# it is appended; without a doc, the doc is made.
report_install() { # doc, section file, mark, [heading]
	local doc=$1 section=$2 mark=$3 heading=${4:-} tmp=$1.tmp
	if [[ -f "$doc" ]] && grep -q "<!-- $mark:begin -->" "$doc"; then
		awk -v sec="$section" -v mark="$mark" -v heading="$heading" '
			!skip && ($0 == "<!-- " mark ":begin -->" ||
				  (heading != "" && $0 == heading)) {
				while ((getline line < sec) > 0) print line
				skip = 1; next
			}
			skip && $0 == "<!-- " mark ":end -->" { skip = 0; next }
			!skip
		' "$doc" > "$tmp"
	elif [[ -f "$doc" ]]; then
		{ cat "$doc"; echo; cat "$section"; } > "$tmp"
	else
		{ printf '# Performance\n\n'; cat "$section"; } > "$tmp"
	fi
	mv "$tmp" "$doc"
}
