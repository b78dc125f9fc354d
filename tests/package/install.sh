#!/usr/bin/env bash
# install.sh CMAKE BUILD_DIR CC PKG_CONFIG [EXTRA_CFLAGS]
#
# Installs BUILD_DIR into a fresh temporary prefix and uses it the documented ways (README
# "Installing"), from a copy of tests/package/consumer outside the source tree:
#   1. CMake: find_package(ufdsm) with CMAKE_PREFIX_PATH=<prefix>, target ufdsm::ufdsm, and a
#      test of the consumer's own started by ufdsm::dsmrun;
#   2. pkg-config: cc sum.c $(pkg-config --cflags --libs ufdsm), PKG_CONFIG_PATH=<prefix>/...,
#      and -Wl,-rpath,$(pkg-config --variable=libdir ufdsm) so it finds the library at run time;
# then runs each program on 2 nodes with the installed dsmrun and checks its result. Each
# program must load the installed libufdsm.so.0 (CMake records the directory of an imported
# library in the build RPATH; the pkg-config build gets it from -rpath), not the build tree's.
# EXTRA_CFLAGS: compile and link flags the consumer needs too (the sanitizers of a
# -DUFDSM_SANITIZE=ON build).
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 CMAKE BUILD_DIR CC PKG_CONFIG [EXTRA_CFLAGS]" >&2
  exit 2
fi
cmake=$1 build=$2 cc=$3 pkgconfig=$4 extra=${5:-}
here=$(cd "$(dirname "$0")" && pwd)
ctest=$(dirname "$cmake")/ctest
work=$(mktemp -d "${TMPDIR:-/tmp}/ufdsm-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
fail() {
  echo "FAILED: $*" >&2
  exit 1
}
# Nothing from the environment may point a step at another ufdsm.
unset LD_LIBRARY_PATH PKG_CONFIG_PATH CMAKE_PREFIX_PATH

echo "== cmake --install $build --prefix $prefix"
"$cmake" --install "$build" --prefix "$prefix" >"$work/install.log" 2>&1 ||
  { cat "$work/install.log" >&2; fail "cmake --install failed (output above)"; }
pc=$(find "$prefix" -name ufdsm.pc -path '*/pkgconfig/*')
[ -n "$pc" ] || fail "no ufdsm.pc installed under $prefix (install(FILES ... ufdsm.pc) in CMakeLists.txt)"
libdir=$(dirname "$(dirname "$pc")")
for f in bin/dsmrun bin/dsmtrace include/dsm.h; do
  [ -e "$prefix/$f" ] || fail "$f is not installed (install() rules in CMakeLists.txt)"
done
for f in libufdsm.so libufdsm.so.0 cmake/ufdsm/ufdsmConfig.cmake cmake/ufdsm/ufdsmConfigVersion.cmake; do
  [ -e "$libdir/$f" ] || fail "${libdir#"$prefix"/}/$f is not installed (install() rules in CMakeLists.txt)"
done
[ "$(readlink "$libdir/libufdsm.so")" = libufdsm.so.0 ] ||
  fail "the development link libufdsm.so does not point at the soname libufdsm.so.0"
soname=$(LC_ALL=C readelf -d "$libdir/libufdsm.so.0" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
[ "$soname" = libufdsm.so.0 ] || fail "the installed library's soname is '$soname', expected libufdsm.so.0 (SOVERSION)"
if find "$prefix" -name '*.a' | grep -q .; then
  fail "static libraries were installed: $(find "$prefix" -name '*.a'); the layers belong inside libufdsm.so"
fi
"$prefix/bin/dsmtrace" --help >/dev/null || fail "the installed dsmtrace does not run"

cp -r "$here/consumer" "$work/src"

# $1: program, $2: how it was built. The program must use the installed library and print the
# sum of rank+1 over 2 nodes.
run() {
  local prog=$1 how=$2 lib out
  lib=$(ldd "$prog" | awk '$1 == "libufdsm.so.0" { print $3 }')
  if [ -z "$lib" ] || [ "$(realpath "$lib")" != "$(realpath "$libdir/libufdsm.so.0")" ]; then
    fail "$how: the program loads libufdsm.so.0 from '${lib:-nowhere}', not from $libdir"
  fi
  out=$(DSM_MEMORY=256M "$prefix/bin/dsmrun" -n 2 "$prog" 2>&1) ||
    { echo "$out" >&2; fail "$how: dsmrun -n 2 failed (output above)"; }
  grep -qx 'sum 3 on 2 nodes' <<<"$out" ||
    { echo "$out" >&2; fail "$how: expected 'sum 3 on 2 nodes' (1 + 2) in the output above"; }
  echo "$how: $out"
}

echo "== CMake: find_package(ufdsm) + ufdsm::ufdsm"
"$cmake" -S "$work/src" -B "$work/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="-Wall -Wextra -Werror $extra" \
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF >"$work/cmake.log" 2>&1 ||
  { cat "$work/cmake.log" >&2; fail "configuring a project with find_package(ufdsm) failed (output above)"; }
found=$(sed -n 's/^ufdsm_DIR:PATH=//p' "$work/cmake-build/CMakeCache.txt")
[ "$found" = "$libdir/cmake/ufdsm" ] ||
  fail "find_package(ufdsm) used '$found', not the installed $libdir/cmake/ufdsm"
"$cmake" --build "$work/cmake-build" >"$work/build.log" 2>&1 ||
  { cat "$work/build.log" >&2; fail "building against ufdsm::ufdsm failed (output above)"; }
run "$work/cmake-build/sum" "CMake"
# The consumer's own test, started by the imported target ufdsm::dsmrun.
grep -qF "$prefix/bin/dsmrun" "$work/cmake-build/CTestTestfile.cmake" ||
  fail "ufdsm::dsmrun does not name the installed $prefix/bin/dsmrun: $(grep add_test "$work/cmake-build/CTestTestfile.cmake")"
(cd "$work/cmake-build" && DSM_MEMORY=256M "$ctest" --output-on-failure >"$work/ctest.log" 2>&1) ||
  { cat "$work/ctest.log" >&2; fail "the consumer's add_test(COMMAND ufdsm::dsmrun ...) failed (output above)"; }
echo "CMake: add_test(COMMAND ufdsm::dsmrun -n 2 ...) passed"

echo "== pkg-config: cc \$(pkg-config --cflags --libs ufdsm)"
export PKG_CONFIG_PATH=$libdir/pkgconfig
flags=$("$pkgconfig" --cflags --libs ufdsm) || fail "pkg-config does not know ufdsm with PKG_CONFIG_PATH=$PKG_CONFIG_PATH"
rpath=$("$pkgconfig" --variable=libdir ufdsm)
# shellcheck disable=SC2086 # the flags are words
"$cc" -std=c11 -Wall -Wextra -Werror $extra -o "$work/sum-pc" "$work/src/sum.c" $flags \
  -Wl,-rpath,"$rpath" || fail "cc sum.c $flags failed"
run "$work/sum-pc" "pkg-config"
echo "install: passed"
