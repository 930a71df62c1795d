#!/usr/bin/env bash
# Self-test of scripts/check-banned: a banned call hidden after or between
# comments, or on a code line that starts with '*', is caught; a banned name
# inside a comment (block, //, or a // comment continued by a backslash) is
# not. Run by ctest (check_banned_selftest).
set -u
here=$(cd "$(dirname "$0")" && pwd)
check="$here/../../scripts/check-banned"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0

# must_catch NAME LINE: the file is refused and the hit names line LINE.
must_catch() {
	local out
	out=$("$check" "$tmp/$1.c" 2>&1)
	if [ $? -eq 0 ] || ! grep -q "^$tmp/$1.c:$2:" <<<"$out"; then
		echo "FAIL: $1: expected a hit at line $2, got:"
		echo "$out"
		fails=$((fails + 1))
	fi
}

# must_pass NAME: the file is accepted.
must_pass() {
	local out
	if ! out=$("$check" "$tmp/$1.c" 2>&1); then
		echo "FAIL: $1: expected no hit, got:"
		echo "$out"
		fails=$((fails + 1))
	fi
}

# A continuation line starting with '*' (the old script skipped it as a
# comment line).
cat >"$tmp/star_continuation.c" <<'C'
int f(const char *b)
{
	return 2
	       * atoi(b);
}
C
must_catch star_continuation 4

# The old loophole word for word: a code line that starts with '*'.
printf '%s\n' 'void g(char **a, const char *b)' '{' '* strcpy(*a, b);' '}' >"$tmp/star_line.c"
must_catch star_line 3

# A call after a block comment on the same line.
printf '%s\n' 'void h(char *a, const char *b)' '{' '	/* copy */ strcpy(a, b);' '}' \
	>"$tmp/after_comment.c"
must_catch after_comment 3

# A call after a block comment that spans lines, on the comment's last line.
cat >"$tmp/after_multiline.c" <<'C'
void k(char *buf, int x)
{
	/* format it
	 * here */ sprintf(buf, "%d", x);
}
C
must_catch after_multiline 4

# The name and its '(' split by a comment.
printf '%s\n' 'void m(char *a, const char *b)' '{' '	strcat /* x */ (a, b);' '}' \
	>"$tmp/split_call.c"
must_catch split_call 3

# A "/*" inside a string literal opens no comment.
cat >"$tmp/string_opener.c" <<'C'
void n(char *a, const char *b)
{
	const char *s = "/*";
	strcpy(a, b); /* "*/
	(void)s;
}
C
must_catch string_opener 4

# Banned names inside comments only.
cat >"$tmp/comments_only.c" <<'C'
/* strcpy(a, b) is banned: use memcpy with a length.
 * sprintf(buf, fmt) is banned too; so is
 * atoi(s). */
// rand() is not random enough; strtok(s, " ") keeps state
int p(int x)
{
	return x; // gets(buf) never \
	   sscanf(s, "%d", &x) either
}
C
must_pass comments_only

# A banned name that is not a call.
printf '%s\n' 'int strcpy_count;' 'int q(void) { return strcpy_count; }' >"$tmp/not_a_call.c"
must_pass not_a_call

# And the tree itself is clean.
if ! "$check" >/dev/null; then
	echo "FAIL: scripts/check-banned finds banned calls in the tree"
	fails=$((fails + 1))
fi

if [ "$fails" -ne 0 ]; then
	echo "$fails check(s) failed"
	exit 1
fi
echo "check-banned self-test: ok"
