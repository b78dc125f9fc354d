#!/usr/bin/env python3
"""check_exports.py - libufdsm.so exports exactly its API: the functions the public headers
declare, and the libc calls the library interposes.

  check_exports.py NM LIBRARY MAP FAULT_C HEADER...

NM       the nm of the toolchain (binutils), used as `NM -D --defined-only LIBRARY`
LIBRARY  the built libufdsm.so
MAP      dsm/libufdsm.map, the linker version script that decides the exports
FAULT_C  dsm/fault.c: its WRAPPED(X) macro lists the interposed calls, and functions defined
         there with __attribute__((alias("one of them"))) are interposed too
HEADER   include/*.h

The expected set is derived, not written down here, so that a function added to a header is
checked without touching this test. Failures name each symbol and what to do. Exit status 0
when the exports match, 1 when they do not, 2 when an input cannot be read or parsed.
"""
import re
import subprocess
import sys

MAP_HINT = "dsm/libufdsm.map"
# Keywords that are followed by '(' at file scope without naming a function.
NOT_FUNCTIONS = {"_Static_assert", "static_assert", "sizeof", "alignof", "_Alignof", "typeof",
                 "__typeof__", "_Alignas", "alignas"}


def die(msg):
    print(f"check_exports: {msg}", file=sys.stderr)
    sys.exit(2)


def strip_comments(text):
    """Removes C comments, keeping string and character literals (a "/*" in a string is not
    a comment)."""
    token = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|/\*.*?\*/|//[^\n]*', re.S)
    return token.sub(lambda m: m.group(0) if m.group(0)[0] in "\"'" else " ", text)


def strip_preprocessor(text):
    """Removes preprocessor directives, with their backslash-continued lines."""
    text = re.sub(r"\\\n", " ", text)
    return "\n".join(l for l in text.split("\n") if not l.lstrip().startswith("#"))


def strip_attributes(text):
    """Removes __attribute__((...)) (balanced parentheses), which would look like a call."""
    out, i = [], 0
    for m in re.finditer(r"\b__attribute__\s*\(", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 0, m.end() - 1
        while j < len(text):
            lit = re.match(r'"(?:\\.|[^"\\\n])*"', text[j:])  # a "(" in a string is text
            if lit:
                j += lit.end()
                continue
            depth += {"(": 1, ")": -1}.get(text[j], 0)
            j += 1
            if depth == 0:
                break
        i = j
    out.append(text[i:])
    return "".join(out)


def header_functions(path):
    """The functions a header declares (or defines) at file scope with external linkage:
    in each top-level statement that is not a typedef and not static, the identifier that is
    directly followed by '(' outside any parentheses."""
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as e:
        die(f"cannot read the header {path}: {e.strerror}")
    text = strip_attributes(strip_preprocessor(strip_comments(text)))
    text = re.sub(r'\bextern\s*"C"\s*\{', " ", text)  # C++ guard: not a scope of its own
    # Top-level statements: brace bodies (struct, enum, function bodies) are dropped; a
    # statement ends at ';' or at a '}' that closes a top-level body.
    statements, cur, depth = [], [], 0
    for ch in text:
        if ch == "{":
            depth += 1
            cur.append(" {} ")
        elif ch == "}":
            if depth == 0:
                continue  # the closing brace of the extern "C" guard
            depth -= 1
            if depth == 0:
                statements.append("".join(cur))
                cur = []
        elif depth == 0:
            if ch == ";":
                statements.append("".join(cur))
                cur = []
            else:
                cur.append(ch)
    names = set()
    for st in statements:
        words = re.findall(r"[A-Za-z_]\w*", st)
        if not words or words[0] == "typedef" or "static" in words:
            continue
        paren = 0
        for m in re.finditer(r"[A-Za-z_]\w*|[()]", st):
            tok = m.group(0)
            if tok == "(":
                paren += 1
            elif tok == ")":
                paren -= 1
            elif paren == 0 and re.match(r"\s*\(", st[m.end():]):
                # "type (*name)(...)" declares a pointer variable, not a function
                if not re.match(r"\s*\(\s*\*", st[m.end():]) and tok not in NOT_FUNCTIONS:
                    names.add(tok)
                break
    return names


def interposed(path):
    try:
        text = strip_comments(open(path, encoding="utf-8").read())
    except OSError as e:
        die(f"cannot read {path}: {e.strerror}")
    m = re.search(r"#\s*define\s+WRAPPED\s*\(\s*X\s*\)((?:[^\n]*\\\n)*[^\n]*)", text)
    if not m:
        die(f"{path} has no '#define WRAPPED(X)' list of interposed calls: pass the file that "
            "defines it (tests/package/CMakeLists.txt)")
    wrapped = set(re.findall(r"\bX\s*\(\s*(\w+)\s*\)", m.group(1)))
    if not wrapped:
        die(f"the WRAPPED(X) macro in {path} names no call: expected X(read) X(write) ...")
    aliases = set()
    for a in re.finditer(r"\b(\w+)\s*\([^;{]*\)\s*__attribute__\s*\(\(\s*alias\s*\(\s*\"(\w+)\"",
                         text):
        if a.group(2) in wrapped:
            aliases.add(a.group(1))
    return wrapped | aliases


def map_globals(path):
    """The names listed as global in the version script (patterns are reported as such)."""
    try:
        text = strip_comments(open(path, encoding="utf-8").read())
    except OSError as e:
        die(f"cannot read the version script {path}: {e.strerror}")
    names = set()
    for block in re.findall(r"global\s*:(.*?)(?:local\s*:|\})", text, re.S):
        names |= {n.strip() for n in block.split(";") if n.strip()}
    return names


def exported(nm, lib):
    try:
        out = subprocess.run([nm, "-D", "--defined-only", lib], check=True, text=True,
                             capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        die(f"'{nm} -D --defined-only {lib}' failed: {getattr(e, 'stderr', '') or e}")
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        kind, name = parts[-2], parts[-1]
        if kind == "A":
            continue  # a version node's own marker symbol, not code or data
        names.add(name.split("@")[0])
    return names


def main(argv):
    if len(argv) < 6:
        die("usage: check_exports.py NM LIBRARY MAP FAULT_C HEADER...")
    nm, lib, map_path, fault_c, headers = argv[1], argv[2], argv[3], argv[4], argv[5:]
    declared = {}
    for h in headers:
        for name in header_functions(h):
            declared[name] = h
    if not declared:
        die(f"found no function declarations in {' '.join(headers)}: the parser in {argv[0]} "
            "does not understand them")
    wrapped = interposed(fault_c)
    expected = set(declared) | wrapped
    have = exported(nm, lib)
    listed = map_globals(map_path)

    errors = []
    for name in sorted(expected - have):
        where = declared.get(name) or f"WRAPPED in {fault_c}"
        if name in listed:
            errors.append(f"{name} ({where}) is listed in {MAP_HINT} but libufdsm.so does not "
                          "export it: define it in dsm/ (not static)")
        else:
            errors.append(f"{name} ({where}) is not exported: add '{name};' to the global list "
                          f"in {MAP_HINT}")
    for name in sorted(have - expected):
        errors.append(f"libufdsm.so exports {name}, which no public header declares and "
                      f"dsm/fault.c does not interpose: remove it from {MAP_HINT} (or declare "
                      "it in include/dsm.h if it is meant to be public)")
    for name in sorted(listed - expected - have):
        errors.append(f"{MAP_HINT} lists {name}, which is neither declared in include/ nor "
                      "interposed: remove it")
    if errors:
        print(f"libufdsm.so exports {len(have)} symbols; expected {len(expected)} "
              f"({len(declared)} declared in {', '.join(headers)}, {len(wrapped)} interposed):")
        for e in errors:
            print("  " + e)
        return 1
    print(f"libufdsm.so exports exactly its {len(expected)} API symbols: {len(declared)} "
          f"declared functions, {len(wrapped)} interposed libc calls")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
