#!/usr/bin/env bash
# readme.sh REPO BUILD [SANITIZER_FLAGS] - the README's example and its build line, run as
# written.
#
# Takes the first ```c block of README.md (the example) as prog.c and the ```sh block that
# follows it (the build line and the dsmrun line), and runs those lines unchanged with bash in
# a scratch directory where include/ is the repository's and build/ is BUILD, so "as written"
# holds for any build directory. Checks:
#   - the compiler prints nothing (no warnings) with the README's own flags, and the example
#     also compiles with -Wall -Wextra -Werror -std=c11 (a missing #include fails here);
#   - the program starts without LD_LIBRARY_PATH (the build line must make it findable, e.g.
#     an rpath) and libufdsm.so resolves to BUILD, not to some installed copy;
#   - it prints what the README's "# prints N" comment says.
# SANITIZER_FLAGS (a sanitizer build of the library): cc gets them too, through a wrapper
# first on PATH, since such a library cannot link into a program built without them.
set -euo pipefail
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
    echo "usage: $0 REPO BUILD [SANITIZER_FLAGS]" >&2
    exit 2
fi
REPO=$(cd "$1" && pwd)
BUILD=$(cd "$2" && pwd)
while read -r v; do unset "$v"; done < <(compgen -e | grep '^DSM_' || true)
unset LD_LIBRARY_PATH LIBRARY_PATH CPATH C_INCLUDE_PATH
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
    echo "readme: FAILED: $*" >&2
    exit 1
}

python3 - "$REPO/README.md" "$tmp" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"```c\n(.*?)```", text, re.S)
if not m:
    sys.exit("readme: no ```c block in README.md")
rest = text[m.end():]
s = re.search(r"```sh\n(.*?)```", rest, re.S)
if not s or "prog.c" not in s.group(1):
    sys.exit("readme: no ```sh block with the build line (naming prog.c) after the example")
open(sys.argv[2] + "/prog.c", "w").write(m.group(1))
open(sys.argv[2] + "/lines.sh", "w").write(s.group(1))
PY
if [ -n "${3:-}" ]; then
    mkdir "$tmp/bin"
    real_cc=$(command -v cc)
    printf '#!/bin/sh\nexec %s %s "$@"\n' "$real_cc" "$3" >"$tmp/bin/cc"
    chmod +x "$tmp/bin/cc"
    export PATH="$tmp/bin:$PATH"
fi
ln -s "$REPO/include" "$tmp/include"
ln -s "$BUILD" "$tmp/build"
echo "readme: the README's lines:"
sed 's/^/  | /' "$tmp/lines.sh"
expect=$(sed -n 's/.*# prints \([0-9][0-9]*\).*/\1/p' "$tmp/lines.sh" | head -1)
[ -n "$expect" ] || fail "the dsmrun line has no '# prints N' comment saying what to expect"

cc_line=$(grep -E '^(cc|gcc|clang) ' "$tmp/lines.sh" | head -1)
[ -n "$cc_line" ] || fail "no compiler line (cc ...) in the README's build block"
(cd "$tmp" && bash -c "$cc_line") >"$tmp/cc.out" 2>&1 || {
    cat "$tmp/cc.out" >&2
    fail "the README's build line does not compile the example"
}
[ ! -s "$tmp/cc.out" ] || {
    cat "$tmp/cc.out" >&2
    fail "the README's build line prints warnings"
}
cc -std=c11 -Wall -Wextra -Werror -fsyntax-only -I"$REPO/include" "$tmp/prog.c" ||
    fail "the example does not compile cleanly with -std=c11 -Wall -Wextra -Werror"
lib=$(cd "$tmp" && ldd ./prog | awk '/libufdsm/ {print $3}')
[ -n "$lib" ] && [ "$lib" != "not" ] || fail "./prog cannot find libufdsm.so (no rpath?)"
[ "$(readlink -f "$lib")" = "$(readlink -f "$BUILD/libufdsm.so")" ] ||
    [ "$(dirname "$(readlink -f "$lib")")" = "$BUILD" ] ||
    fail "./prog loads $lib, not the build's library: the build line gives no path to it"

run_line=$(grep -v -E '^(cc|gcc|clang) ' "$tmp/lines.sh" | grep -v '^\s*$' | grep -v '^#')
out=$(cd "$tmp" && timeout 120 bash -c "$run_line" 2>"$tmp/run.err") || {
    cat "$tmp/run.err" >&2
    fail "'$run_line' failed"
}
[ "$out" = "$expect" ] || fail "'$run_line' printed '$out', the README says $expect"
echo "readme: built without warnings, started without LD_LIBRARY_PATH, printed $out: ok"
