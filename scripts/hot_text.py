"""Writes the linker scripts that group each function's executed code and the data it reads
(called by scripts/hot-text).

Input: callgrind profiles (--dump-instr=yes, uncompressed positions and names) of the functions' release
binaries built with symbols, and those binaries (possibly several builds of one function). Output, per
function name: a linker script that inserts, before `.text`, a `.text.hot` output section collecting
the input sections of every function that executed in any of its builds.

Rust and C code is compiled with one section per function (`.text.<symbol>`; LLVM and GCC put cold,
start-up and hot functions under `.text.unlikely.`, `.text.startup.` or `.text.hot.`), so naming a
function's symbol selects its code. Symbols carry hashes that change with the target, the compiler and
dependency versions; the patterns replace them with globs so one list serves every build of a function
and survives small changes. Several monomorphisations can share a pattern, so the script names the
functions that ran exactly first and the patterns after them: in a profiled build the code that ran
comes first, and the instances only a pattern reaches follow it. Builds inline differently, so a list
can miss helpers another build keeps out of line; that is why scripts/hot-text profiles more than one.

Data (`--data`): every load and store valgrind's lackey saw inside the binary, and the link map of that
build (`--extract-link-maps`), name the input sections of `.rodata` and `.data.rel.ro` that were read;
`hot_data.ld` gathers them. Named data (statics, jump tables: `.rodata.<symbol>`) gets the same hash-free patterns as code;
string literals and vtables are anonymous (`.rodata..Lanon.<module hash>.<n>`), and their module hash
is a hash of the crate's symbol names, so those names hold only for the builds that were profiled:
scripts/hot-text profiles both the native build and the one cargo-lambda makes.
"""

import argparse
import bisect
import datetime
import glob
import json
import os
import re
import subprocess
import sys
from collections import defaultdict

# Modules that pick code by CPU at run time: callgrind's CPU is not the deployed one, so the sibling
# implementations are named too (`4sha26sha2567x86_sha8compress` -> `4sha26sha256*8compress`).
CPU_SPECIFIC = {
    "x86", "x86_64", "x86_sha", "aarch64", "aarch64_sha2", "avx", "avx2", "sse2", "sse41", "neon",
    "soft", "generic",
}
# Code that a CPU check picks where no profile saw it run: sha2's SHA-256 block functions are the SHA-NI
# (x86_64) or SHA2-instruction (arm64) ones on the deployed CPUs, while callgrind's emulated CPU takes
# the portable one (inlined into `compress256`). SigV4 signs every AWS request with them.
ALWAYS_HOT = ["_ZN4sha26sha256*"]
LEGACY_HASH = re.compile(r"h[0-9a-f]{16}")
# `.llvm.<hash>` from LTO, `.<n>` from LLVM making local names unique: both differ between builds.
LLVM_SUFFIX = re.compile(r"(\.llvm)?\.\d+$")
V0_CRATE_HASH = re.compile(r"Cs[0-9A-Za-z]+_")
V0_BACKREF = re.compile(r"B[0-9A-Za-z]*_")


def executed_addresses(profile_paths):
    """Maps each binary (callgrind's `ob=`) to the instruction addresses that executed in it."""
    executed = defaultdict(set)
    for path in profile_paths:
        current_object = None
        function_object = None
        with open(path, errors="replace") as profile:
            for line in profile:
                if line.startswith("ob="):
                    current_object = line[3:].strip()
                elif line.startswith("fn="):
                    function_object = current_object
                elif line.startswith("0x") and function_object:
                    executed[function_object].add(int(line.split(None, 1)[0], 16))
    return executed


def function_symbols(binary):
    """(start, size, name) of every function symbol in `binary`, sorted by address."""
    listing = subprocess.run(
        ["nm", "--print-size", "--defined-only", binary],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    symbols = []
    for line in listing.splitlines():
        fields = line.split(None, 3)
        if len(fields) == 4 and fields[2] in "tTwW":
            symbols.append((int(fields[0], 16), int(fields[1], 16), fields[3]))
    symbols.sort()
    return symbols


def executed_functions(binary, addresses):
    symbols = function_symbols(binary)
    starts = [start for start, _, _ in symbols]
    names = set()
    for address in addresses:
        index = bisect.bisect_right(starts, address) - 1
        if index >= 0:
            start, size, name = symbols[index]
            if start <= address < start + size:
                names.add(name)
    return names


def legacy_path(name):
    """The components of a legacy-mangled Rust symbol (`_ZN` (<length><identifier>)* `E`), or None."""
    if not name.startswith("_ZN"):
        return None
    components, at = [], 3
    while at < len(name) and name[at] != "E":
        digits = re.match(r"\d+", name[at:])
        if not digits:
            return None
        at += len(digits.group())
        length = int(digits.group())
        components.append(name[at : at + length])
        at += length
    return components if name[at:] == "E" else None


def pattern(symbol):
    """The glob naming `symbol`'s code across builds: hashes and LLVM's suffixes wildcarded.

    >>> pattern("_ZN5tokio7runtime4task3raw4poll17h0a8a1d282bec65ddE")
    '_ZN5tokio7runtime4task3raw4poll17h*E*'
    >>> pattern("_ZN9hashbrown3raw13RawTableInner7reserve17h00bbf35e6ca7c48cE.llvm.1234567")
    '_ZN9hashbrown3raw13RawTableInner7reserve17h*E*'
    >>> pattern("_RNvXsZ_NtCsgEmfK2I1SDS_5alloc6stringNtB5_6String3len")
    '_RNvXsZ_NtCs*_5alloc6stringNtB*_6String3len*'
    >>> pattern("_ZN4sha26sha2567x86_sha8compress17h102151699ecf494dE")
    '_ZN4sha26sha256*8compress17h*E*'
    >>> pattern("_ZN6memchr9find_avx217h102151699ecf494dE")  # only whole components are CPU modules
    '_ZN6memchr9find_avx217h*E*'
    >>> pattern("_ZN4core3fmt5write17h02151699ecf494dE")  # not a hash: 15 digits
    '_ZN4core3fmt5write17h02151699ecf494dE*'
    >>> pattern("_RNvXs2_NtNtCsjrHSEGnQ3l9_3std4hash6randomNtB5_13DefaultHasherNtNtCsgEmfK2I1SDS_4core4hash6Hasher5write.3700")
    '_RNvXs2_NtNtCs*_3std4hash6randomNtB*_13DefaultHasherNtNtCs*_4core4hash6Hasher5write*'
    >>> pattern("do_library_init")
    'do_library_init*'
    """
    name = LLVM_SUFFIX.sub("", symbol)
    components = legacy_path(name)
    if components is not None:
        globbed = []
        for component in components:
            if LEGACY_HASH.fullmatch(component):
                globbed.append("17h*")
            elif component in CPU_SPECIFIC:
                globbed.append("*")
            else:
                globbed.append(f"{len(component)}{component}")
        return "_ZN" + "".join(globbed) + "E*"
    if name.startswith("_R"):
        name = V0_BACKREF.sub("B*_", V0_CRATE_HASH.sub("Cs*_", name))
    return name.rstrip("*") + "*"


DATA_OUTPUTS = (".rodata", ".data.rel.ro")
MAP_LINE = re.compile(r"\s*([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+( +)(\S.*)$")
TRACE_LINE = re.compile(r" [LSM] ([0-9a-f]+),(\d+)")


def map_input_sections(map_path):
    """(address, size, output section, input section) of every input section of the data outputs,
    from an lld map (`-Wl,-Map`), sorted by address.

    >>> import tempfile
    >>> lines = [
    ...     "             VMA              LMA     Size Align Out     In      Symbol",
    ...     "          2027c0           2027c0    e4480    64 .rodata",
    ...     "          2027c0           2027c0       18     4         x.o:(.rodata._ZN3foo3bar17h0123456789abcdefE)",
    ...     "          2027d8           2027d8       80     4         x.o:(.rodata..Lanon.a7ba.26)",
    ...     "          2027d8           2027d8        0     1                 some_symbol",
    ...     "          370aa0           370aa0    2c000    32 .text",
    ...     "          370aa0           370aa0       10     4         x.o:(.text._ZN3foo3baz17h0123456789abcdefE)",
    ... ]
    >>> with tempfile.NamedTemporaryFile("w", suffix=".map", delete=False) as f:
    ...     _ = f.write("\\n".join(lines))
    >>> map_input_sections(f.name)
    [(2107328, 24, '.rodata', '.rodata._ZN3foo3bar17h0123456789abcdefE'), (2107352, 128, '.rodata', '.rodata..Lanon.a7ba.26')]
    """
    sections, output = [], None
    with open(map_path, errors="replace") as listing:
        for line in listing:
            match = MAP_LINE.match(line)
            if not match:
                continue
            address, size, indent, rest = match.groups()
            if len(indent) == 1:
                output = rest.strip()
            elif output in DATA_OUTPUTS and rest.endswith(")") and ":(" in rest and int(size, 16):
                name = rest[rest.rindex(":(") + 2 : -1]
                sections.append((int(address, 16), int(size, 16), output, name))
    sections.sort()
    return sections


def extract_link_maps(messages, maps_dir):
    """Writes <maps_dir>/<binary>.map from cargo's JSON messages (`--message-format=json`) of a
    profiling build, whose binaries print their link map (`--print-map`) and turn on the
    `linker_messages` lint that hands it to cargo (functions/link_layout.rs); every other compiler
    message goes to stderr as cargo would have shown it. Returns the binaries whose map was written.

    >>> import json, tempfile
    >>> lines = [
    ...     json.dumps({"reason": "compiler-message", "target": {"name": "answer-ingest"},
    ...                 "message": {"message": "linker stdout: VMA LMA\\n  2e0 .interp",
    ...                             "rendered": "warning: linker stdout: ..."}}),
    ...     json.dumps({"reason": "compiler-artifact", "target": {"name": "empty"}}),
    ... ]
    >>> maps_dir = tempfile.mkdtemp()
    >>> extract_link_maps(lines, maps_dir)
    ['answer-ingest']
    >>> open(os.path.join(maps_dir, "answer-ingest.map")).read()
    ' VMA LMA\\n  2e0 .interp'
    """
    written = []
    os.makedirs(maps_dir, exist_ok=True)
    for line in messages:
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if record.get("reason") != "compiler-message":
            continue
        message = record["message"]
        text = message.get("message", "")
        if text.startswith("linker stdout:"):
            name = record["target"]["name"]
            with open(os.path.join(maps_dir, f"{name}.map"), "w") as link_map:
                link_map.write(text[len("linker stdout:") :])
            written.append(name)
        elif message.get("rendered"):
            print(message["rendered"], end="", file=sys.stderr)
    return written


def touched_sections(sections, trace_paths):
    """The (output, input) section names holding any byte lackey saw loaded or stored."""
    starts = [start for start, _, _, _ in sections]
    touched = set()
    for path in trace_paths:
        with open(path, errors="replace") as trace:
            for line in trace:
                match = TRACE_LINE.match(line)
                if not match:
                    continue
                address, length = int(match.group(1), 16), int(match.group(2))
                index = max(bisect.bisect_right(starts, address) - 1, 0)
                while index < len(sections) and sections[index][0] < address + length:
                    start, size, output, name = sections[index]
                    if start + size > address:
                        touched.add((output, name))
                    index += 1
    return touched


def data_pattern(output, name):
    """The glob for a data input section: hashes of named data wildcarded as for code; anonymous
    data as it is; a bare `.rodata` (a C file's unnamed constants, all of them) never.

    >>> data_pattern(".rodata", ".rodata._ZN11encoding_rs4data5TABLE17h921b8a92bb51031cE")
    '.rodata._ZN11encoding_rs4data5TABLE17h*E*'
    >>> data_pattern(".data.rel.ro", ".data.rel.ro..Lanon.0758c16866d132ae0d458135871a1b98.827")
    '.data.rel.ro..Lanon.0758c16866d132ae0d458135871a1b98.827'
    >>> data_pattern(".rodata", ".rodata.str1.1")
    '.rodata.str1.1'
    >>> data_pattern(".rodata", ".rodata") is None
    True
    """
    for prefix in (".data.rel.ro.local.", ".data.rel.ro.", ".rodata."):
        if name.startswith(prefix):
            symbol = name[len(prefix) :]
            if symbol.startswith(("_ZN", "_R")):
                return prefix + pattern(symbol)
            return name
    return None


def data_linker_script(patterns_by_output, source):
    lines = [
        "/* The read-only data the functions read, placed together (see functions/link_layout.rs).",
        "   Generated by scripts/hot-text: do not edit by hand.",
        f"   {source} */",
    ]
    rodata = patterns_by_output.get(".rodata", [])
    relro = patterns_by_output.get(".data.rel.ro", [])
    if rodata:
        lines += ["SECTIONS", "{", "  .rodata.hot :", "  {"]
        lines += [f"    *({p})" for p in rodata]
        lines += ["  }", "}", "INSERT BEFORE .rodata;"]
    if relro:
        # Named `.data.rel.ro` so that it stays read-only after relocation with either linker (lld
        # treats only that exact name as such); the rest of `.data.rel.ro` follows it.
        lines += ["SECTIONS", "{", "  .data.rel.ro :", "  {"]
        lines += [f"    *({p})" for p in relro]
        lines += ["  }", "}", "INSERT BEFORE .dynamic;"]
    return "\n".join(lines + [""])


def data_scripts(data_dir, functions_dir, commit):
    """hot_data.ld per function from <data_dir>/<build>/<function>.map and <function>.trace.*."""
    patterns = defaultdict(lambda: defaultdict(set))
    for map_path in sorted(glob.glob(os.path.join(data_dir, "*", "*.map"))):
        function = os.path.basename(map_path)[: -len(".map")]
        traces = glob.glob(map_path[: -len(".map")] + ".trace.*")
        sections = map_input_sections(map_path)
        if not sections:
            sys.exit(f"no .rodata or .data.rel.ro input sections in {map_path}: not an lld map?")
        touched = touched_sections(sections, traces)
        if not touched:
            sys.exit(f"no data read in {map_path}'s binary by {len(traces)} traces")
        print(f"    {map_path}: {len(touched)} data sections read")
        for output, name in touched:
            glob_pattern = data_pattern(output, name)
            if glob_pattern:
                patterns[function][output].add(glob_pattern)
    scripts = {}
    for function, by_output in patterns.items():
        sorted_patterns = {output: sorted(p) for output, p in by_output.items()}
        counts = ", ".join(f"{output} {len(p)}" for output, p in sorted(sorted_patterns.items()))
        source = (
            f"{function}: {counts} patterns; {datetime.date.today().isoformat()}, "
            f"commit {commit or 'unknown'}."
        )
        path = os.path.join(functions_dir, function, "hot_data.ld")
        scripts[path] = (data_linker_script(sorted_patterns, source), source)
    return scripts


def linker_script(symbols, patterns, source):
    """The hot-code script: first the executed functions by their exact names, then the hash-free
    patterns. In a profiled build the exact names gather precisely the code that ran; the patterns
    then add what only they reach (in other builds, everything), after it. Legacy-mangled
    monomorphisations differ only in their hash, so a pattern also takes a function's instances that
    did not run: a quarter of a megabyte in answer-ingest, which the order keeps behind the code that
    runs instead of among it.

    >>> print(linker_script(["_ZN1a1f17h0123456789abcdefE"], ["_ZN1a1f17h*E*"], "test"))  # doctest: +ELLIPSIS
    /* ...
        *(.text._ZN1a1f17h0123456789abcdefE .text.*._ZN1a1f17h0123456789abcdefE)
        *(.text._ZN1a1f17h*E* .text.*._ZN1a1f17h*E*)
      }
    }
    INSERT BEFORE .text;
    <BLANKLINE>
    """
    lines = [
        "/* The code the functions run, placed together at the start of the text (see",
        "   functions/link_layout.rs). Generated by scripts/hot-text: do not edit by hand.",
        f"   {source} */",
        "SECTIONS",
        "{",
        "  .text.hot :",
        "  {",
        # The C runtime's start-up code (`_start`, `frame_dummy`) sits in plain .text sections of
        # crt1.o / Scrt1.o and crtbegin*.o, which callgrind names but no symbol pattern reaches.
        "    *crt1.o(.text)",
        "    *crtbegin*.o(.text)",
    ]
    # `.text.X` and `.text.<prefix>.X` (unlikely, startup, hot): the compiler's cold and start-up
    # functions run too, at every cold start.
    lines += [f"    *(.text.{p} .text.*.{p})" for p in list(symbols) + list(patterns)]
    lines += ["  }", "}", "INSERT BEFORE .text;", ""]
    return "\n".join(lines)


def main():
    if sys.argv[1:2] == ["--extract-link-maps"]:
        # scripts/hot-text: `cargo build --message-format=json ... | hot_text.py --extract-link-maps DIR`
        written = extract_link_maps(sys.stdin, sys.argv[2])
        print(f"    link maps of {', '.join(sorted(written)) or 'no binary'} in {sys.argv[2]}")
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", required=True, help="directory of callgrind profiles")
    parser.add_argument(
        "--functions-dir",
        required=True,
        help="writes <dir>/<binary name>/hot_text.ld, one list per name across the builds given",
    )
    parser.add_argument(
        "--data",
        help="directory of <build>/<function>.map link maps and <function>.trace.* lackey traces",
    )
    parser.add_argument("binaries", nargs="+", help="the symbol builds the profiles ran")
    args = parser.parse_args()

    profiles = sorted(glob.glob(os.path.join(args.profiles, "*")))
    executed = executed_addresses(profiles)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    # Scripts first, then writes: a failure leaves every existing script as it was.
    executed_by_function = defaultdict(set)
    for binary in args.binaries:
        addresses = executed.get(os.path.abspath(binary), set())
        if not addresses:
            sys.exit(f"no profile ran {binary}: did the benchmark start it?")
        functions = executed_functions(binary, addresses)
        if len(functions) < 50:
            # Even the empty function runs hundreds: callgrind could not name this binary's code
            # (stripped, or laid out with `.text.hot`, which valgrind does not read symbols from).
            sys.exit(
                f"only {len(functions)} functions named in {binary}: build it with "
                "HANDOVER_PROFILING_BUILD=1 (symbols kept, no .text.hot)"
            )
        print(f"    {binary}: {len(functions)} functions executed")
        executed_by_function[os.path.basename(binary)].update(functions)
    scripts = {}
    for name, functions in executed_by_function.items():
        # One list per function: a union would pull code that only another function runs to the front.
        patterns = sorted({pattern(symbol) for symbol in functions} | set(ALWAYS_HOT))
        source = (
            f"{name}: {len(functions)} functions, {len(patterns)} patterns; "
            f"{datetime.date.today().isoformat()}, commit {commit or 'unknown'}."
        )
        scripts[os.path.join(args.functions_dir, name, "hot_text.ld")] = (
            linker_script(sorted(functions), patterns, source),
            source,
        )
    if args.data:
        scripts.update(data_scripts(args.data, args.functions_dir, commit))
    for path, (script, source) in scripts.items():
        with open(path, "w") as output:
            output.write(script)
        print(f"    {path}: {source}")


if __name__ == "__main__":
    main()
