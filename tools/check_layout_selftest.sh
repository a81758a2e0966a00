#!/bin/sh
# Self-test of tools/check_layout.py on a tiny synthetic crate: a cycle hidden behind a
# re-export, an upward import, a module alias, comments/strings/tests that must not count.
set -eu
py="python3 $(dirname "$0")/check_layout.py"
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT; mkdir -p "$t/src/b" "$t/src/p"
cat > "$t/src/lib.rs" <<'R'
//! crate::c::g in a doc comment does not count.
pub mod a; pub mod b; pub mod c; pub mod p;
pub use crate::b::inner as alias;
pub use a::Thing;
R
printf 'use crate::b::{self, inner::{Helper as H}};\npub struct Thing(H);\n' > "$t/src/a.rs"
printf 'pub mod inner;\npub use inner::Helper;\n' > "$t/src/b/mod.rs"
printf 'pub struct Helper;\npub fn f(_: &crate::Thing) {}\n' > "$t/src/b/inner.rs"
cat > "$t/src/c.rs" <<'R'
// crate::a::Thing in a comment, /* crate::a::Thing */ and in strings:
const S: &str = "crate::a::Thing"; const Q: char = '"'; const R: &str = r#"crate::a"#;
pub fn g() { crate::alias::f as fn(&_); }
#[cfg(test)]
mod tests { use crate::a::Thing; use super::super::p::*; }
R
printf 'mod kid;\npub struct Shared;\n' > "$t/src/p/mod.rs"
printf 'use super::Shared;\n' > "$t/src/p/kid.rs"
out=$($py --src "$t/src" --folders) && { echo "FAIL: exit 0 expected 1"; exit 1; }
echo "$out"
check() { echo "$out" | grep -qF -- "$1" || { echo "FAIL: missing: $1"; exit 1; }; }
check 'CYCLE among 2 files: a.rs, b/inner.rs'
check 'a.rs:1 (crate::b::inner::Helper) -> b/inner.rs'
check 'b/inner.rs:2 (crate::Thing) -> a.rs'
check 'UPWARD p/kid.rs -> ancestor p/mod.rs: Shared:1'
check 'c -> b: 1'
check 'FOLDER CYCLE a -> b -> a'
check '7 files, 4 edges, 1 cycles, 1 upward imports, 1 folder cycles, 0 ops->model imports, 0 files over 1000 lines'
# Break the cycle and the upward import: the check must pass.
printf 'pub struct Helper;\n' > "$t/src/b/inner.rs"; printf 'pub struct Own;\n' > "$t/src/p/kid.rs"
out=$($py --src "$t/src") || { echo "FAIL: clean tree exit $?"; echo "$out"; exit 1; }
check '7 files, 2 edges, 0 cycles, 0 upward imports'
yes '// padding' | head -n 1001 >> "$t/src/c.rs"
out=$($py --src "$t/src") && { echo "FAIL: a 1000+ line file must fail"; exit 1; }
check 'TOO LONG c.rs: 1006 lines'
echo "selftest OK"
