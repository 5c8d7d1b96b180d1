#!/usr/bin/env python3
"""packaging/symbols: libwoodpecker.so exports exactly the API that the
public headers declare (issue 13): include/woodpecker.h and every other
header beside it (include/woodpecker_stream.h, the streaming client).

    check_symbols.py LIBWOODPECKER_SO WOODPECKER_H

The declarations come from the compiler, not from a list kept by hand:
functions from gcc -aux-info (every prototype, with its file and line),
data from the headers' preprocessed `extern` declarations. Checks that
  - every exported symbol is wp_<lowercase>..., wps_<lowercase>... or
    WP_EARLIEST/WP_LATEST (no internal wp__*, seg_*, s3_*, ... symbol leaks);
  - every declared function and datum is exported, and nothing else;
  - functions are text, data is not; the soname is libwoodpecker.so.<major>.
"""
import glob
import os
import re
import subprocess
import sys
import tempfile


def run(*cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def header_functions(header):
    with tempfile.TemporaryDirectory() as tmp:
        aux = os.path.join(tmp, "aux.txt")
        run("gcc", "-std=c11", "-fsyntax-only", "-aux-info", aux, "-x", "c", header)
        with open(aux) as f:
            lines = f.read().splitlines()
    names = set()
    for line in lines:
        m = re.match(r"/\* (.+?):(\d+):\w+ \*/ (.*)$", line)
        if not m or not os.path.exists(m.group(1)) or not os.path.samefile(m.group(1), header):
            continue
        name = re.search(r"([A-Za-z_]\w*) \(", m.group(3))
        if not name:
            sys.exit("check_symbols: cannot read a name from %r" % line)
        names.add(name.group(1))
    return names


def header_data(header):
    """Names in `extern` declarations without a parameter list."""
    text, current = [], None
    for line in run("gcc", "-std=c11", "-E", "-x", "c", header).splitlines():
        m = re.match(r'# \d+ "(.*)"', line)
        if m:
            current = m.group(1)
            continue
        if current and os.path.exists(current) and os.path.samefile(current, header):
            text.append(line)
    names = set()
    for decl in re.findall(r"\bextern\b([^;{}]*);", " ".join(text)):
        if "(" in decl:
            continue  # a function: header_functions has it
        for declarator in decl.split(","):
            names.add(re.findall(r"[A-Za-z_]\w*", declarator)[-1])
    return names


def exported(lib):
    syms = {}
    for line in run("nm", "-D", "--defined-only", lib).splitlines():
        parts = line.split()
        if len(parts) >= 3:
            syms[parts[2].split("@")[0]] = parts[1]
    return syms


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: check_symbols.py LIBWOODPECKER_SO WOODPECKER_H")
    lib, header = sys.argv[1], sys.argv[2]
    # The public headers: woodpecker.h and the others installed beside it.
    headers = [header] + sorted(h for h in glob.glob(os.path.join(os.path.dirname(header), "*.h"))
                                if not os.path.samefile(h, header))
    funcs, data, problems = set(), set(), []
    for h in headers:
        hf = header_functions(h)
        if not hf:
            problems.append("read no function from %s: is the parser broken?" % h)
        funcs |= hf
        data |= header_data(h)
    syms = exported(lib)
    if len(funcs) < 30 or not data:
        problems.append("read only %d functions and %d data from %s: is the parser broken?"
                        % (len(funcs), len(data), header))
    public = re.compile(r"wps?_[a-z]\w*|WP_(EARLIEST|LATEST)")
    for s in sorted(syms):
        if not public.fullmatch(s):
            problems.append("exported but not public API: %s" % s)
    declared = funcs | data
    for s in sorted(declared - set(syms)):
        problems.append("declared in the public headers but not exported: %s" % s)
    for s in sorted(set(syms) - declared):
        if public.fullmatch(s):
            problems.append("exported but not declared in the public headers: %s" % s)
    for s in sorted(funcs & set(syms)):
        if syms[s] not in "Ti":
            problems.append("function %s has symbol type %s" % (s, syms[s]))
    for s in sorted(data & set(syms)):
        if syms[s] not in "DRBG":
            problems.append("datum %s has symbol type %s" % (s, syms[s]))
    soname = re.search(r"^\s*SONAME\s+(\S+)", run("objdump", "-p", lib), re.M)
    if not soname or not re.fullmatch(r"libwoodpecker\.so\.\d+", soname.group(1)):
        problems.append("soname: %s" % (soname.group(1) if soname else "none"))
    for p in problems:
        print("FAIL: " + p)
    if problems:
        return 1
    print("%s: %d functions and %d data exported, exactly those of %s; soname %s"
          % (os.path.basename(lib), len(funcs), len(data),
             " and ".join(os.path.basename(h) for h in headers), soname.group(1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
