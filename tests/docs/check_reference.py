#!/usr/bin/env python3
"""check_reference.py REPO - docs/reference.md documents every public name.

Fails (exit 1, naming each missing name and where it is declared) when docs/reference.md
lacks, as `name` in backquotes:
  - a function declared in include/dsm.h (any identifier followed by "(" in a declaration
    ending with ";" outside comments, plus function-like macros such as dsm_stats),
  - a field of dsm_options_t,
  - a DSM_* variable of dsm/env_vars.h's table,
  - a DSM_E* error code.
It also fails when it finds fewer than 20 functions or 10 variables: a parser broken by a
reformatted header must not pass by finding nothing.
"""
import re
import sys
from pathlib import Path


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def main():
    repo = Path(sys.argv[1])
    header = strip_comments((repo / "include/dsm.h").read_text())
    env_vars = (repo / "dsm/env_vars.h").read_text()
    ref = (repo / "docs/reference.md").read_text()
    documented = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)", ref))

    funcs = set()
    for decl in header.split(";"):
        decl = re.sub(r"#[^\n]*", " ", decl)  # preprocessor lines
        m = re.search(r"\b(dsm_[a-z0-9_]+)\s*\(", decl)
        if m and "{" not in decl.split(m.group(1))[0][-40:]:
            funcs.add(m.group(1))
    funcs |= set(re.findall(r"#define\s+(dsm_[a-z0-9_]+)\(", header))

    m = re.search(r"typedef struct dsm_options \{(.*?)\} dsm_options_t;", header, re.S)
    if not m:
        print("check_reference: dsm_options_t not found in include/dsm.h (parser out of date)")
        return 1
    fields = re.findall(r"([a-z_][a-z0-9_]*)\s*;", m.group(1))

    variables = re.findall(r'\{"(DSM_[A-Z0-9_]+)"', env_vars)
    codes = re.findall(r"\b(DSM_E[A-Z]+|DSM_OK)\s*=", header)

    missing = []
    for kind, names, where in (("function", funcs, "include/dsm.h"),
                               ("dsm_options_t field", fields, "include/dsm.h"),
                               ("variable", variables, "dsm/env_vars.h"),
                               ("error code", codes, "include/dsm.h")):
        for n in sorted(set(names)):
            if n not in documented:
                missing.append(f"{kind} {n} ({where}) is not documented in docs/reference.md")
    if len(funcs) < 20 or len(variables) < 10 or len(fields) < 10:
        missing.append(f"parser found only {len(funcs)} functions, {len(fields)} option fields, "
                       f"{len(variables)} variables: update tests/docs/check_reference.py")
    for line in missing:
        print("check_reference: " + line)
    if missing:
        print("check_reference: add the missing names to docs/reference.md (as `name`)")
        return 1
    print(f"check_reference: {len(funcs)} functions, {len(fields)} option fields, "
          f"{len(variables)} variables, {len(codes)} error codes documented")
    return 0


if __name__ == "__main__":
    sys.exit(main())
