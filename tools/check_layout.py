#!/usr/bin/env python3
"""Check the module layout of src/: no import circles, no imports that run back up, small files.

Usage: python3 tools/check_layout.py [--src DIR] [--dot FILE] [--folders]

Rules, as this script applies them:

* The module tree comes from the files on disk (standard layout, no `#[path]`): src/lib.rs is
  the library root `crate`; src/main.rs is the binary root and src/cli/** belongs to the binary.
  a/b.rs and a/b/mod.rs are both module `a::b`. Inside the binary `samrt::...` names the library.
* Comments, doc comments, strings, raw strings and char literals are blanked first, so a
  `crate::x` in a comment counts for nothing. Items under `#[cfg(test)]` (and any inline
  `mod tests { .. }`) are skipped: test code may import anything. Other `cfg`s are ignored:
  every import counts whatever the features.
* A reference is a `use` path (grouped `{..}` trees, `self`, `as` renames, globs) or a path in
  code that starts at `crate`, `super`, `self`, `samrt`, a child module, or a module imported
  by `use`. It resolves to the deepest module file on its path; the next segment is an item.
  When that file only brings the item in by `use` (e.g. `pub use error::{Error, Result}` in
  lib.rs, or `pub use crate::io::image as preprocess`), the use is followed to the file that
  defines the item. Importing a module itself is only an alias; the items used through it count.
* Edge A -> B: A refers to an item defined in B (A != B); a glob `use b::*` counts as an edge to
  b's own file when that file defines any item. `mod b;` declarations are not edges.
  A `pub use` is a re-export: it is followed (above) and is an edge only when the file itself
  also uses the name outside `use` statements.
* Failures (exit 1): a cycle among files (each strongly connected component is printed with
  one shortest cycle, every hop with the line of its import); an upward import (B is a proper
  ancestor module of A, and the item is defined in B's own file); a file over 1000 lines.
  Files over 800 lines are only noted. Edges collapsed to top-level folders (sam, io, cpu,
  ...; a top-level file is its own folder) must not form a cycle either, and no file under an
  `ops/` folder may import from a `model/` folder (ops are the layer below the models).
  `--folders` prints the folder edges.
"""
import argparse
import re
import sys
from collections import defaultdict, deque
from pathlib import Path

MAX_LINES, NOTE_LINES = 1000, 800
RAW_STR = re.compile(r'b?r(#*)"')
CFG_TEST = re.compile(r'#\s*\[\s*cfg\s*\(\s*(?:all\s*\(\s*)?test\b')
USE = re.compile(r'(?<![\w$])(pub\b\s*(?:\([^)]*\))?\s*)?use\s+([^;]*);')
CODE_PATH = re.compile(r'(?<![\w:.])\$?\w+(?:\s*::\s*\w+)+')
INLINE_MOD = re.compile(r'\bmod\s+(\w+)\s*\{')
TOKEN = re.compile(r'::|[{},*]|\w+')


def blank(chars, a, b):
    for k in range(a, min(b, len(chars))):
        if chars[k] != '\n':
            chars[k] = ' '


def strip_literals(text):
    """Blank comments, string and char literals, keeping every offset and newline in place."""
    out, i, n = list(text), 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith('//', i):
            j = text.find('\n', i) % (n + 1)  # -1 (no newline) becomes n
        elif text.startswith('/*', i):  # block comments nest in Rust
            depth, j = 1, i + 2
            while j < n and depth:
                step = {'/*': 1, '*/': -1}.get(text[j:j + 2], 0)
                depth, j = depth + step, j + (2 if step else 1)
        elif c in 'br' and not (text[i - 1:i].isalnum() or text[i - 1:i] == '_') and RAW_STR.match(text, i):
            m = RAW_STR.match(text, i)
            j = text.find('"' + m.group(1), m.end())
            j = n if j < 0 else j + 1 + len(m.group(1))
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == '\\' else 1
            j += 1
        elif c == "'" and text.startswith('\\', i + 1):  # '\n', '\'', '\u{..}'
            j = text.find("'", i + 3) + 1 or n
        elif c == "'" and text[i + 2:i + 3] == "'":  # 'x' ('"' too); a lifetime has no 2nd quote
            j = i + 3
        else:
            i += 1
            continue
        blank(out, i, j)
        i = j
    return ''.join(out)


def block_end(code, j):
    """End of the item starting at j: after a `;` outside brackets, or after its `{ .. }`."""
    depth = 0
    for k in range(j, len(code)):
        if code[k] == ';' and depth == 0:
            return k + 1
        depth += (code[k] in '{[(') - (code[k] in '}])')
        if code[k] == '}' and depth == 0:
            return k + 1
    return len(code)


def strip_tests(code):
    """Blank items under #[cfg(test)] and inline `mod tests { .. }` blocks."""
    out, done = list(code), 0
    starts = [m.start() for m in CFG_TEST.finditer(code)]
    starts += [m.start() for m in INLINE_MOD.finditer(code) if m.group(1) == 'tests']
    for s in sorted(starts):
        if s >= done:
            done = block_end(code, code.index(']', s) + 1 if code[s] == '#' else s)
            blank(out, s, done)
    return ''.join(out)


def parse_use_tree(toks, k, prefix, out):
    """Append (segments, local_name, offset) for each leaf of the use tree at toks[k]."""
    path = list(prefix)
    while k < len(toks):
        tok, pos = toks[k]
        if tok == '{':
            k += 1
            while k < len(toks) and toks[k][0] != '}':
                k = parse_use_tree(toks, k, path, out)
                k += k < len(toks) and toks[k][0] == ','
            return k + 1
        if tok == '*':
            out.append((path, '*', pos))
            return k + 1
        path, k = path + [tok], k + 1
        if k < len(toks) and toks[k][0] == '::':
            k += 1
            continue
        local = path[-1]
        if k + 1 < len(toks) and toks[k][0] == 'as':
            local, k = toks[k + 1][0], k + 2
        if path[-1] == 'self':  # `a::{self}` imports module a
            path = path[:-1]
            local = path[-1] if local == 'self' and path else local
        out.append((path, local, pos))
        return k
    return k


class File:
    def __init__(self, src, path):
        rel = path.relative_to(src)
        self.rel, parts = rel.as_posix(), list(rel.with_suffix('').parts)
        self.crate = 'bin' if parts[0] in ('main', 'cli') else 'lib'
        self.mod = tuple(parts[:-1] if parts[-1] == 'mod' or parts in (['lib'], ['main']) else parts)
        self.folder = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        self.text = path.read_text(encoding='utf-8')
        self.nlines = len(self.text.splitlines())
        code = strip_tests(strip_literals(self.text))
        mods = [(m.end(), block_end(code, m.end() - 1)) for m in INLINE_MOD.finditer(code)]
        depth = lambda pos: sum(a <= pos < b for a, b in mods)  # enclosing inline modules
        self.uses, self.globs, self.refs = {}, [], []  # each ref: (segs, line, depth, pub, local)
        body = list(code)
        for m in USE.finditer(code):
            toks = [(t.group(), m.start(2) + t.start()) for t in TOKEN.finditer(m.group(2))]
            leaves = []
            parse_use_tree(toks[1:] if toks[:1] and toks[0][0] == '::' else toks, 0, [], leaves)
            for segs, local, pos in (leaf for leaf in leaves if leaf[0]):
                ref = (segs, self.line(pos), depth(pos), bool(m.group(1)), local)
                if local == '*':
                    self.globs.append(ref)
                elif local != '_':
                    self.uses[local] = ref
                self.refs.append(ref)
            blank(body, m.start(), m.end())
        self.body = ''.join(body)  # the code without comments, literals, tests and `use`s
        for m in CODE_PATH.finditer(self.body):
            segs = [s.strip() for s in m.group().split('::')]
            self.refs.append((segs, self.line(m.start()), depth(m.start()), False, None))

    def __str__(self):
        return self.rel

    __repr__ = __str__

    def line(self, pos):
        return self.text.count('\n', 0, pos) + 1

    def defines(self, name):
        pat = rf'\b(?:fn|struct|enum|trait|type|const|static|union)\s+{name}\b|macro_rules!\s*{name}\b'
        return re.search(pat, self.body) is not None

    def uses_name(self, name):
        """Whether the code names `name` itself (not `mod name`, not a path `name::..`)."""
        return re.search(rf'(?<![\w:])(?<!mod\s){name}\b(?!\s*::)', self.body) is not None


class Tree:
    def __init__(self, src):
        self.files = [File(src, p) for p in sorted(src.rglob('*.rs')) if p.relative_to(src).parts[0] != 'bin']
        self.mods = {}
        for f in self.files:
            if (f.crate, f.mod) in self.mods:
                print(f'warning: {f} and {self.mods[f.crate, f.mod]} are both module {"::".join(f.mod)}')
            self.mods[f.crate, f.mod] = f
        # A folder with no mod.rs (a move in progress) still lets paths walk through it.
        dirs = {d.relative_to(src).parts for d in src.rglob('*') if d.is_dir()}
        dirs = {('bin' if d[0] == 'cli' else 'lib', d) for d in dirs if d[0] != 'bin'}
        for key in sorted(dirs - set(self.mods)):
            print(f'warning: src/{"/".join(key[1])}/ has no mod.rs nor {key[1][-1]}.rs')
        self.known = dirs | set(self.mods)

    def start(self, f, segs, depth, seen):
        """(module key, remaining segments) where a path in f begins, or None if not ours."""
        head = segs[0].lstrip('$')
        if head == 'crate':
            return (f.crate, ()), segs[1:]
        if head == 'samrt' and f.crate == 'bin':
            return ('lib', ()), segs[1:]
        if head in ('self', 'super'):
            i = int(head == 'self')
            while i < len(segs) and segs[i] == 'super':
                i += 1
            ups = i - int(head == 'self') - depth
            if ups < 0 or (ups == 0 and depth) or ups > len(f.mod):
                return None  # inside this file's inline modules, or above the root
            return (f.crate, f.mod[:len(f.mod) - ups]), segs[i:]
        if (f.crate, f.mod + (head,)) in self.mods:
            return (f.crate, f.mod + (head,)), segs[1:]
        if head in f.uses and len(segs) > 1:  # a module brought in by `use`
            r = self.resolve(f, f.uses[head][0], f.uses[head][2], seen, want_module=True)
            if r and r[1] is None:
                return r[0], segs[1:]
        return None

    def resolve(self, f, segs, depth=0, seen=frozenset(), want_module=False):
        """(module key of the defining file, item or None for the module itself), or None.

        A last segment naming both a child module and an item (`pub use fingerprint::fingerprint`)
        is taken as the item unless want_module."""
        if (f.rel, tuple(segs)) in seen:
            return None  # a `use` loop
        seen = seen | {(f.rel, tuple(segs))}
        begin = self.start(f, segs, depth, seen)
        if begin is None:
            return None
        key, rest = begin
        for i, seg in enumerate(rest):
            here = self.mods.get(key)
            item_too = i == len(rest) - 1 and here and (seg in here.uses or here.defines(seg))
            if (key[0], key[1] + (seg,)) in self.known and (want_module or not item_too):
                key = (key[0], key[1] + (seg,))
                continue
            if here is None:
                return None
            if seg in here.uses:  # a module alias, or an item brought in by `use`
                r = self.resolve(here, here.uses[seg][0], here.uses[seg][2], seen, want_module)
                if r and r[1] is None:
                    key = r[0]
                    continue
                if r:
                    return r
            elif not here.defines(seg):
                for g in here.globs:
                    r = self.resolve(here, g[0] + [seg], g[2], seen)
                    if r and r[1] and self.mods[r[0]].defines(r[1]):
                        return r
            return key, seg
        return (key, None) if key in self.mods else None

    def edges(self):
        """{(A, B): (first line, path text)}, and the upward imports (A, line, B, item)."""
        edges, upward, unknown = {}, [], set()
        for f in self.files:
            for segs, line, depth, pub, local in f.refs:
                if pub and (local in (None, '*') or not f.uses_name(local)):
                    continue  # a re-export only: followed by resolve(), not an edge
                r = self.resolve(f, segs, depth)
                if not r or self.mods[r[0]] is f:
                    continue
                b, item = self.mods[r[0]], r[1] or ('*' if local == '*' else None)
                if item is None or (item == '*' and not b.defines(r'\w+')):
                    continue  # a module import (an alias), or a glob of a file that defines nothing
                if (f, b) not in edges or line < edges[f, b][0]:
                    edges[f, b] = (line, '::'.join(segs))
                if b.crate == f.crate and len(b.mod) < len(f.mod) and f.mod[:len(b.mod)] == b.mod:
                    upward.append((f, line, b, item))
                if item != '*' and not b.defines(item) and (item, b) not in unknown:
                    unknown.add((item, b))
                    print(f'warning: `{item}` not found in {b} ({f}:{line} {"::".join(segs)})')
        return edges, upward


def reach(succ, s):
    """BFS from s: {node: the node it was first reached from}; s itself appears only on a cycle."""
    prev, todo = {}, deque([s])
    while todo:
        v = todo.popleft()
        for w in sorted(succ[v], key=str):
            if w not in prev:
                prev[w] = v
                todo.append(w)
    return prev


def find_cycles(nodes, succ):
    """[(strongly connected component, one shortest cycle through its first member)]."""
    prevs, out, done = {v: reach(succ, v) for v in nodes}, [], set()
    for v in sorted(nodes, key=str):
        if v in done or v not in prevs[v]:
            continue
        comp = sorted((w for w in prevs[v] if v in prevs[w]), key=str)
        done.update(comp)
        path = [v]
        while len(path) == 1 or path[-1] != v:
            path.append(prevs[v][path[-1]])
        out.append((comp, path[::-1]))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--src', type=Path, default=Path(__file__).resolve().parent.parent / 'src')
    ap.add_argument('--dot', metavar='FILE', help='write the file graph as Graphviz dot')
    ap.add_argument('--folders', action='store_true', help='print edges between top-level folders')
    args = ap.parse_args()
    tree = Tree(args.src)
    for f in tree.files:
        if re.search(r'#\s*\[\s*path\b', f.text):
            print(f'warning: {f} uses #[path]; this check assumes the standard layout')
    edges, upward = tree.edges()
    succ = defaultdict(set)
    for a, b in edges:
        succ[a].add(b)
    cycles = find_cycles(tree.files, succ)
    for comp, path in cycles:
        print(f'CYCLE among {len(comp)} files: ' + ', '.join(map(str, comp)))
        for a, b in zip(path, path[1:]):
            print(f'    {a}:{edges[a, b][0]} ({edges[a, b][1]}) -> {b}')
    ups = defaultdict(dict)  # (file, ancestor) -> {item: first line}
    for a, line, b, item in upward:
        ups[a, b][item] = min(line, ups[a, b].get(item, line))
    for (a, b), items in sorted(ups.items(), key=str):
        listed = ', '.join(f'{i}:{n}' for i, n in sorted(items.items(), key=lambda x: (x[1], x[0])))
        print(f'UPWARD {a} -> ancestor {b}: {listed}')
    for f in sorted(tree.files, key=lambda f: -f.nlines):
        if f.nlines > NOTE_LINES:
            kind = 'TOO LONG' if f.nlines > MAX_LINES else 'note: long'
            print(f'{kind} {f}: {f.nlines} lines (limit {MAX_LINES})')
    fe = defaultdict(int)
    for a, b in edges:
        fe[a.folder, b.folder] += a.folder != b.folder
    fsucc = defaultdict(set)
    if args.folders:
        print('folder edges:')
    for (a, b), n in sorted(fe.items()):
        if n:
            fsucc[a].add(b)
            if args.folders:
                print(f'    {a} -> {b}: {n}')
    fcycles = list(find_cycles({f.folder for f in tree.files}, fsucc))
    for _, path in fcycles:
        print(f'FOLDER CYCLE {" -> ".join(path)}')
        for x, y in zip(path, path[1:]):
            hops = sorted((a.rel, edges[a, b][0], b.rel) for a, b in edges if (a.folder, b.folder) == (x, y))
            print(f'    {x} -> {y}: ' + ', '.join(f'{a}:{n}->{b}' for a, n, b in hops))
    ops_up = sorted((a.rel, line, b.rel) for (a, b), (line, _) in edges.items()
                    if '/ops/' in f'/{a.rel}' and '/model/' in f'/{b.rel}')
    for a, line, b in ops_up:
        print(f'OPS->MODEL {a}:{line} -> {b}')
    if args.dot:
        with open(args.dot, 'w') as out:
            out.write('digraph layout {\n  rankdir=LR; node [shape=box];\n')
            for (a, b), (line, _) in sorted(edges.items(), key=str):
                out.write(f'  "{a}" -> "{b}" [label="{line}"];\n')
            out.write('}\n')
    big = [f for f in tree.files if f.nlines > MAX_LINES]
    n_up = sum(map(len, ups.values()))
    print(f'{len(tree.files)} files, {len(edges)} edges, {len(cycles)} cycles, {n_up} upward imports, '
          f'{len(fcycles)} folder cycles, {len(ops_up)} ops->model imports, '
          f'{len(big)} files over {MAX_LINES} lines')
    return 1 if cycles or upward or big or fcycles or ops_up else 0


if __name__ == '__main__':
    sys.exit(main())
