//! include/samrt.h against capi/src: the CI step that fails when the header and the code
//! drift apart. Both are parsed into the same form (function signatures and struct fields as
//! C type tokens) and compared; then the C compiler checks the header's struct sizes,
//! alignments and offsets against the ones Rust gives capi/src/types.rs, compiled here.
//!
//! A hand-written header plus this check, rather than a generator: the header is the
//! contract users read (its comments, the struct layout the issue fixed), and a generator such
//! as cbindgen would add a dozen build dependencies for 60 lines of declarations.

// Only the structs are used here.
#[allow(dead_code)]
#[path = "../src/types.rs"]
mod types;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What both sides declare: functions as "return name(param, ...)", structs as their
/// fields, opaque types by name; every type as space-separated C tokens.
#[derive(Debug, Default, PartialEq)]
struct Api {
    functions: BTreeMap<String, String>,
    structs: BTreeMap<String, Vec<(String, String)>>,
    opaque: Vec<String>,
}

/// C tokens: identifiers and single punctuation characters.
fn tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in s.chars() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        if !c.is_whitespace() {
            out.push(c.to_string());
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// A C declaration "type tokens name" as (name, type).
fn c_decl(toks: &[String]) -> (String, String) {
    let (name, ty) = toks.split_last().expect("a declaration");
    (name.clone(), ty.join(" "))
}

/// The header without comments, preprocessor lines and the `extern "C"` guard blocks.
fn header_text(src: &str) -> String {
    let mut no_comments = String::new();
    let mut rest = src;
    while let Some(i) = rest.find("/*") {
        no_comments.push_str(&rest[..i]);
        let end = rest[i..].find("*/").expect("closed comment");
        rest = &rest[i + end + 2..];
    }
    no_comments.push_str(rest);
    let mut out = String::new();
    let mut in_cplusplus = false;
    for line in no_comments.lines() {
        let l = line.trim();
        if l.starts_with("#ifdef __cplusplus") {
            in_cplusplus = true;
        } else if in_cplusplus && l.starts_with("#endif") {
            in_cplusplus = false;
        } else if !in_cplusplus && !l.starts_with('#') && !l.starts_with("//") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn parse_header(src: &str) -> Api {
    let toks = tokens(&header_text(src));
    let mut api = Api::default();
    let mut i = 0;
    while i < toks.len() {
        let end = if toks[i] == "typedef" && toks.get(i + 2).is_some_and(|t| t == "{") {
            let close = i + toks[i..].iter().position(|t| t == "}").unwrap();
            close + toks[close..].iter().position(|t| t == ";").unwrap()
        } else {
            i + toks[i..].iter().position(|t| t == ";").expect("a ';'")
        };
        let stmt = &toks[i..end];
        i = end + 1;
        match stmt {
            [t, s, a, b] if t == "typedef" && s == "struct" => {
                assert_eq!(a, b, "typedef struct {a} {b}");
                api.opaque.push(a.clone());
            }
            [t, s, brace, ..] if t == "typedef" && s == "struct" && brace == "{" => {
                let close = stmt.iter().position(|t| t == "}").unwrap();
                let name = stmt[close + 1].clone();
                let mut fields = Vec::new();
                for decl in stmt[3..close].split(|t| t == ";").filter(|d| !d.is_empty()) {
                    // "float x, y": the base type is the first declarator's minus its name
                    // and stars.
                    let mut parts = decl.split(|t| t == ",");
                    let first = parts.next().unwrap();
                    let base_len = first.iter().take_while(|t| *t != "*").count() - 1;
                    let base = &first[..base_len.min(first.len() - 1)];
                    fields.push(c_decl(first));
                    for d in parts {
                        fields.push(c_decl(&[base, d].concat()));
                    }
                }
                api.structs.insert(name, fields);
            }
            _ => {
                let open = stmt.iter().position(|t| t == "(").expect("a function");
                let (name, ret) = c_decl(&stmt[..open]);
                let params = &stmt[open + 1..stmt.len() - 1];
                let params: Vec<String> = match params {
                    [v] if v == "void" => vec![],
                    _ => params.split(|t| t == ",").map(|p| c_decl(p).1).collect(),
                };
                api.functions
                    .insert(name.clone(), signature(&ret, &name, &params));
            }
        }
    }
    api
}

fn signature(ret: &str, name: &str, params: &[String]) -> String {
    format!("{ret} {name}({})", params.join(", "))
}

/// A Rust FFI type as C tokens.
fn c_type(rust: &str) -> String {
    let rust = rust.trim();
    if let Some(inner) = rust.strip_prefix("*const ") {
        let inner = c_type(inner);
        return if inner.contains('*') {
            format!("{inner} const *")
        } else {
            format!("const {inner} *")
        };
    }
    if let Some(inner) = rust.strip_prefix("*mut ") {
        return format!("{} *", c_type(inner));
    }
    match rust {
        "f32" => "float",
        "i32" => "int32_t",
        "u32" => "uint32_t",
        "u8" => "uint8_t",
        "usize" => "size_t",
        "c_int" => "int",
        "c_char" => "char",
        t if t.starts_with("samrt_") => t,
        t => panic!("no C type for the Rust type {t:?}: add it to this test"),
    }
    .to_string()
}

/// The `pub struct`s and `#[no_mangle]` functions of capi/src (rustfmt-formatted).
fn parse_rust(src: &str) -> Api {
    let mut api = Api::default();
    let lines: Vec<&str> = src.lines().map(str::trim).collect();
    for (i, line) in lines.iter().enumerate() {
        let attrs = lines[..i]
            .iter()
            .rev()
            .take_while(|l| l.starts_with("#[") || l.starts_with("///"));
        let attrs: Vec<&str> = attrs.copied().collect();
        // The C API's types are the `samrt_` ones; others (e.g. the handle registry) are
        // private machinery.
        if let Some(name) = line
            .strip_prefix("pub struct ")
            .and_then(|r| r.strip_suffix(" {"))
            .filter(|n| n.starts_with("samrt_"))
        {
            if !attrs.iter().any(|a| a.starts_with("#[repr(C)]")) {
                api.opaque.push(name.to_string());
                continue;
            }
            let fields = lines[i + 1..]
                .iter()
                .take_while(|l| **l != "}")
                .filter_map(|l| l.strip_prefix("pub "))
                .map(|l| {
                    let (n, t) = l.trim_end_matches(',').split_once(": ").unwrap();
                    (n.trim_start_matches("r#").to_string(), c_type(t))
                })
                .collect();
            api.structs.insert(name.to_string(), fields);
        }
        let is_fn = line.starts_with("pub extern \"C\" fn ")
            || line.starts_with("pub unsafe extern \"C\" fn ");
        if is_fn {
            assert!(attrs.contains(&"#[no_mangle]"), "{line}: not #[no_mangle]");
            let text: String = lines[i..].join(" ");
            let text = &text[..text.find('{').unwrap()];
            let name = &text[text.find("fn ").unwrap() + 3..text.find('(').unwrap()];
            let close = text.rfind(')').unwrap();
            let params: Vec<String> = text[text.find('(').unwrap() + 1..close]
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| c_type(p.split_once(": ").unwrap().1))
                .collect();
            let ret = match text[close + 1..].trim().strip_prefix("-> ") {
                Some(t) => c_type(t),
                None => "void".into(),
            };
            api.functions
                .insert(name.to_string(), signature(&ret, name, &params));
        }
    }
    api
}

fn rust_api() -> Api {
    let mut api = Api::default();
    let dir = root().join("capi/src");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let part = parse_rust(&std::fs::read_to_string(&f).unwrap());
        api.functions.extend(part.functions);
        api.structs.extend(part.structs);
        api.opaque.extend(part.opaque);
    }
    api.opaque.sort();
    api
}

/// `file` compiles with `compiler` in standard `std`, every warning an error.
fn compiles(compiler: &str, std: &str, file: &Path) {
    let o = Command::new(compiler)
        .args([
            std,
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-fsyntax-only",
        ])
        .arg("-I")
        .arg(root().join("include"))
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("run {compiler}: {e}"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{compiler} {}: {err}", file.display());
}

fn header() -> String {
    std::fs::read_to_string(root().join("include/samrt.h")).unwrap()
}

#[test]
fn header_declares_what_the_library_exports() {
    let mut h = parse_header(&header());
    h.opaque.sort();
    let r = rust_api();
    for (name, sig) in &h.functions {
        println!("{sig}");
        assert_eq!(
            Some(sig),
            r.functions.get(name),
            "{name}: header vs capi/src"
        );
    }
    assert_eq!(h, r);
    // The issue's API, at least: nothing is lost by editing both sides together.
    let want = [
        "samrt_version",
        "samrt_last_error",
        "samrt_model_load",
        "samrt_model_free",
        "samrt_embed_rgb",
        "samrt_embed_file",
        "samrt_embedding_free",
        "samrt_predict",
        "samrt_masks_free",
    ];
    assert!(want.iter().all(|f| h.functions.contains_key(*f)));
    assert_eq!(h.opaque, ["samrt_embedding", "samrt_model"]);
}

/// The parser sees a changed type, a dropped field and an extra parameter (else the test
/// above could pass on a parser that reads nothing).
#[test]
fn the_comparison_notices_drift() {
    let good = parse_header(&header());
    assert_eq!(good.structs["samrt_point"].len(), 3);
    assert_eq!(good.functions.len(), 9);
    for (from, to) in [
        ("float x, y;", "float x; double y;"),
        ("int32_t label;", ""),
        ("samrt_masks *out);", "samrt_masks *out, int flags);"),
        ("const char *samrt_last_error(void);", ""),
        ("typedef struct samrt_model samrt_model;", ""),
    ] {
        let h = header();
        assert!(h.contains(from), "{from}");
        assert_ne!(
            parse_header(&h.replacen(from, to, 1)),
            good,
            "{from} -> {to}"
        );
    }
}

/// The header's layout, in the C compiler, equals Rust's: sizes, alignments and every
/// field's offset. The header is included first, so it must bring in <stddef.h> and
/// <stdint.h> itself; the C++ compiler checks the `extern "C"` guard.
#[test]
fn c_compiler_agrees_on_the_layout() {
    use std::mem::{align_of, offset_of, size_of};
    use types::{samrt_masks, samrt_point, samrt_prompt};
    let mut checks = Vec::new();
    macro_rules! layout {
        ($t:ident: $($f:tt => $c:ident),*) => {{
            let fields: Vec<&str> = vec![$(stringify!($c)),*];
            assert_eq!(
                fields,
                parse_header(&header()).structs[stringify!($t)]
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>(),
                "the fields listed in this test"
            );
            let t = stringify!($t);
            checks.push(format!("sizeof({t}) == {}", size_of::<$t>()));
            checks.push(format!("_Alignof({t}) == {}", align_of::<$t>()));
            $(checks.push(format!(
                "offsetof({t}, {}) == {}", stringify!($c), offset_of!($t, $f)
            ));)*
        }};
    }
    layout!(samrt_point: x => x, y => y, label => label);
    layout!(samrt_prompt: points => points, n_points => n_points, r#box => box,
        mask_input => mask_input, multimask => multimask);
    layout!(samrt_masks: n_masks => n_masks, width => width, height => height,
        masks => masks, scores => scores, low_res_logits => low_res_logits,
        low_res_side => low_res_side);
    let body: String = checks
        .iter()
        .map(|c| format!("_Static_assert({c}, \"{c}\");\n"))
        .collect();
    let dir = std::env::temp_dir().join(format!("samrt-capi-header-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c = dir.join("layout.c");
    std::fs::write(&c, format!("#include \"samrt.h\"\n{body}")).unwrap();
    let cpp = dir.join("layout.cpp");
    let cpp_body = body
        .replace("_Static_assert", "static_assert")
        .replace("_Alignof", "alignof");
    std::fs::write(&cpp, format!("#include \"samrt.h\"\n{cpp_body}")).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    for (compiler, std, file) in [(&cc, "-std=c11", &c), (&cxx, "-std=c++11", &cpp)] {
        compiles(compiler, std, file);
    }
    println!("{body}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// README.md's "C ABI" example compiles against the header (its statements wrapped in
/// `main`), so the documented calls cannot drift either.
#[test]
fn readme_example_compiles() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = &readme[readme.find("## C ABI").expect("a C ABI section")..];
    let start = section.find("```c\n").expect("a C example") + 5;
    let code = &section[start..start + section[start..].find("```").unwrap()];
    let (includes, body): (Vec<&str>, Vec<&str>) =
        code.lines().partition(|l| l.starts_with("#include"));
    let program = format!(
        "{}\nint main(void) {{\n{}\nreturn 0;\n}}\n",
        includes.join("\n"),
        body.join("\n")
    );
    let dir = std::env::temp_dir().join(format!("samrt-capi-readme-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("readme.c");
    std::fs::write(&file, &program).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    println!("{program}");
    compiles(&cc, "-std=c11", &file);
    let _ = std::fs::remove_dir_all(&dir);
}
