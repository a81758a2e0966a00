//! PTX tokens, literal decoding, and the token cursor the parser walks.
//!
//! The whole source is tokenised up front into a flat vector of spans so the parser can
//! look ahead freely; tokens allocate nothing, which keeps a 16k-line module well inside
//! the parse-time budget. Comments, `@@DWARF` lines (an old debug-info escape hatch, never
//! code) and whitespace vanish here. Everything else a real PTX file contains lexes to one
//! of [`Kind`], so the parser is the single place that decides what is supported.

use super::ast::{Imm, ParseError};

/// `return Err(ParseError)` with a formatted message: errors are most of the parser's
/// control flow, and one line each keeps the grammar readable.
macro_rules! bail {
    ($line:expr, $($fmt:tt)*) => {
        return Err(ParseError { line: $line, message: format!($($fmt)*) })
    };
}
pub(crate) use bail;

pub type PResult<T> = Result<T, ParseError>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `mov`, `%r1`, `%tid.x`, `$L__BB0_3`, `_`, `low`. A `%` name keeps its `.x`-style
    /// suffixes because special registers are single names in PTX, never opcode + modifier.
    Ident,
    /// `.reg`, `.u32`, `.m16n8k16`, `.L2::128B`: a directive or a modifier, dot included.
    Dot,
    /// Any numeric literal, undecoded (`16`, `0x1F`, `0f3F800000`, `1.5e3`, `9.0`, `7U`).
    Num,
    /// `"nounroll"`, quotes included.
    Str,
    /// One punctuation byte: `, ; : { } [ ] ( ) < > @ ! | + - =`.
    Punct(u8),
    Eof,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    pub start: u32,
    pub end: u32,
    pub line: u32,
}

fn ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b'$' || b == b'%'
}

fn ident_cont(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

/// Tokenises `src`. Byte offsets are `u32`: sources over 4 GiB are rejected rather than
/// silently wrapped.
pub fn lex(src: &str) -> Result<Vec<Token>, ParseError> {
    let b = src.as_bytes();
    if b.len() >= u32::MAX as usize {
        return Err(ParseError {
            line: 0,
            message: "PTX source larger than 4 GiB".into(),
        });
    }
    let mut toks = Vec::with_capacity(b.len() / 5 + 16);
    let mut i = 0usize;
    let mut line = 1u32;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let kind = match c {
            b'\n' => {
                line += 1;
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' | 0x0b | 0x0c => {
                i += 1;
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let open = line;
                i += 2;
                loop {
                    match b.get(i) {
                        None => bail!(open, "unterminated `/*` comment"),
                        Some(b'*') if b.get(i + 1) == Some(&b'/') => {
                            i += 2;
                            break;
                        }
                        Some(b'\n') => line += 1,
                        Some(_) => {}
                    }
                    i += 1;
                }
                continue;
            }
            b'@' if b.get(i + 1) == Some(&b'@') => {
                // `@@DWARF ...`: debug info as raw assembler lines; skipped whole.
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' => {
                i += 1;
                loop {
                    match b.get(i) {
                        None | Some(b'\n') => bail!(line, "unterminated string literal"),
                        Some(b'\\') => i += 2,
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                Kind::Str
            }
            b'.' => {
                i += 1;
                let word = i;
                loop {
                    while i < b.len() && ident_cont(b[i]) {
                        i += 1;
                    }
                    // `.shared::cta`, `.L2::128B`: the scope qualifier belongs to the modifier.
                    if i > word && b.get(i) == Some(&b':') && b.get(i + 1) == Some(&b':') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                if i == word {
                    bail!(
                        line,
                        "stray `.` not followed by a directive or modifier name"
                    );
                }
                Kind::Dot
            }
            b'0'..=b'9' => {
                i = scan_number(b, i);
                Kind::Num
            }
            c if ident_start(c) => {
                i += 1;
                while i < b.len() && ident_cont(b[i]) {
                    i += 1;
                }
                if c == b'%' {
                    // `%tid.x`, `%ctaid.y`: component suffixes are part of the name.
                    while b.get(i) == Some(&b'.') && b.get(i + 1).is_some_and(|&n| ident_cont(n)) {
                        i += 1;
                        while i < b.len() && ident_cont(b[i]) {
                            i += 1;
                        }
                    }
                }
                if i == start + 1 && c == b'%' {
                    bail!(line, "`%` not followed by a register name");
                }
                Kind::Ident
            }
            b',' | b';' | b':' | b'{' | b'}' | b'[' | b']' | b'(' | b')' | b'<' | b'>' | b'@'
            | b'!' | b'|' | b'+' | b'-' | b'=' => {
                i += 1;
                Kind::Punct(c)
            }
            _ => {
                let ch = src.get(i..).and_then(|r| r.chars().next()).unwrap_or('?');
                bail!(line, "unexpected character {ch:?}");
            }
        };
        toks.push(Token {
            kind,
            start: start as u32,
            end: i.min(b.len()) as u32,
            line,
        });
    }
    let end = b.len() as u32;
    toks.push(Token {
        kind: Kind::Eof,
        start: end,
        end,
        line,
    });
    Ok(toks)
}

/// Finds the end of a numeric literal starting at `i` (a digit). The scan is generous: a
/// malformed literal such as `12abc` comes out as one token so the parser can name it whole.
fn scan_number(b: &[u8], mut i: usize) -> usize {
    let prefixed = b[i] == b'0'
        && matches!(
            b.get(i + 1),
            Some(b'x' | b'X' | b'b' | b'B' | b'f' | b'F' | b'd' | b'D')
        );
    if !prefixed {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if b.get(i) == Some(&b'.') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            let mut j = i + 1;
            if matches!(b.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            if b.get(j).is_some_and(u8::is_ascii_digit) {
                i = j;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
        }
    }
    while i < b.len() && ident_cont(b[i]) {
        i += 1;
    }
    i
}

/// Decodes a numeric literal token; `None` if malformed. `neg` applies a leading `-`
/// (two's complement for integers, the sign bit for `0f`/`0d`). Decimal floats become
/// [`Imm::F32`] only when `f32ctx` says the place is clearly f32, else [`Imm::F64`].
pub fn decode_number(s: &str, neg: bool, f32ctx: bool) -> Option<Imm> {
    let head = s.get(..2).unwrap_or("");
    let rest = s.get(2..).unwrap_or("");
    let hex_bits = |n: usize| {
        let ok = rest.len() == n && rest.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| u64::from_str_radix(rest, 16).ok()).flatten()
    };
    match head {
        "0f" | "0F" => {
            return Some(Imm::F32(
                hex_bits(8)? as u32 ^ if neg { 1 << 31 } else { 0 },
            ))
        }
        "0d" | "0D" => return Some(Imm::F64(hex_bits(16)? ^ if neg { 1 << 63 } else { 0 })),
        _ => {}
    }
    let prefixed = matches!(head, "0x" | "0X" | "0b" | "0B");
    if !prefixed && s.contains(['.', 'e', 'E']) {
        if !s
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        {
            return None;
        }
        return if f32ctx {
            let v: f32 = s.parse().ok()?;
            Some(Imm::F32((if neg { -v } else { v }).to_bits()))
        } else {
            let v: f64 = s.parse().ok()?;
            Some(Imm::F64((if neg { -v } else { v }).to_bits()))
        };
    }
    let digits = s.strip_suffix(['U', 'u']).unwrap_or(s);
    let (radix, body) = match digits.get(..2) {
        Some("0x" | "0X") => (16, &digits[2..]),
        Some("0b" | "0B") => (2, &digits[2..]),
        _ if digits.len() > 1 && digits.starts_with('0') => (8, &digits[1..]),
        _ => (10, digits),
    };
    if body.is_empty() || !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let v = u64::from_str_radix(body, radix).ok()? as i64;
    Some(Imm::Int(if neg { v.wrapping_neg() } else { v }))
}

/// A position in the token vector plus the primitive moves and error shapes every grammar
/// rule needs. The parser derefs to it.
pub struct Cursor<'a> {
    pub src: &'a str,
    /// Always ends with an `Eof` token, which `bump` never moves past.
    toks: Vec<Token>,
    pub pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(src: &'a str) -> PResult<Self> {
        Ok(Cursor {
            src,
            toks: lex(src)?,
            pos: 0,
        })
    }

    pub fn peek(&self) -> Token {
        self.toks[self.pos.min(self.toks.len() - 1)]
    }

    pub fn peek2(&self) -> Token {
        self.toks[(self.pos + 1).min(self.toks.len() - 1)]
    }

    pub fn bump(&mut self) -> Token {
        let t = self.peek();
        if t.kind != Kind::Eof {
            self.pos += 1;
        }
        t
    }

    pub fn text(&self, t: Token) -> &'a str {
        self.src.get(t.start as usize..t.end as usize).unwrap_or("")
    }

    /// A `.word` token's text without its dot.
    pub fn word(&self, t: Token) -> &'a str {
        self.text(t).get(1..).unwrap_or("")
    }

    /// How a token reads in a message.
    pub fn show(&self, t: Token) -> String {
        match t.kind {
            Kind::Eof => "end of input".into(),
            _ => format!("`{}`", self.text(t)),
        }
    }

    /// The usual error: "expected X, found Y" at `t`.
    pub fn found<T>(&self, t: Token, what: &str) -> PResult<T> {
        bail!(t.line, "expected {what}, found {}", self.show(t))
    }

    pub fn is_punct(&self, c: u8) -> bool {
        self.peek().kind == Kind::Punct(c)
    }

    /// The directive or modifier at the cursor (`".reg"`), or `""`.
    pub fn dot(&self) -> &'a str {
        let t = self.peek();
        if t.kind == Kind::Dot {
            self.text(t)
        } else {
            ""
        }
    }

    pub fn eat(&mut self, c: u8) -> bool {
        let hit = self.is_punct(c);
        if hit {
            self.bump();
        }
        hit
    }

    pub fn expect(&mut self, c: u8, context: &str) -> PResult<Token> {
        let t = self.peek();
        if t.kind == Kind::Punct(c) {
            return Ok(self.bump());
        }
        self.found(t, &format!("`{}` {context}", c as char))
    }

    pub fn ident(&mut self, what: &str) -> PResult<&'a str> {
        let t = self.peek();
        if t.kind != Kind::Ident {
            return self.found(t, what);
        }
        self.bump();
        Ok(self.text(t))
    }

    /// A numeric literal at `t`, decoded, or an error naming it.
    pub fn number(&self, t: Token, neg: bool, f32ctx: bool) -> PResult<Imm> {
        match decode_number(self.text(t), neg, f32ctx) {
            Some(v) if t.kind == Kind::Num => Ok(v),
            _ => bail!(t.line, "bad number {}", self.show(t)),
        }
    }

    /// A plain non-negative integer (counts, sizes, alignments, dimensions).
    pub fn uint(&mut self, what: &str) -> PResult<u64> {
        let t = self.peek();
        match self.number(t, false, false) {
            Ok(Imm::Int(v)) if v >= 0 => {
                self.bump();
                Ok(v as u64)
            }
            _ => self.found(t, &format!("{what} (a non-negative integer)")),
        }
    }

    pub fn u32(&mut self, what: &str) -> PResult<u32> {
        let line = self.peek().line;
        let v = self.uint(what)?;
        u32::try_from(v).or_else(|_| bail!(line, "{what} {v} is out of range"))
    }

    /// `.version 9.0`'s number, which lexes as one decimal-float token.
    pub fn version(&mut self) -> PResult<(u32, u32)> {
        let t = self.bump();
        let parsed = match (t.kind, self.text(t).split_once('.')) {
            (Kind::Num, Some((a, b))) => a.parse().ok().zip(b.parse().ok()),
            _ => None,
        };
        parsed.map_or_else(|| self.found(t, "a `.version` MAJOR.MINOR"), Ok)
    }

    /// `.maxntid 256, 1, 1`: omitted trailing dimensions are 1.
    pub fn dim3(&mut self) -> PResult<[u32; 3]> {
        let mut d = [1u32; 3];
        for (i, slot) in d.iter_mut().enumerate() {
            if i > 0 && !self.eat(b',') {
                break;
            }
            *slot = self.u32("a thread-count dimension")?;
        }
        Ok(d)
    }

    /// Skips a `.file` / `.loc` directive: they have no `;` and end with their line.
    pub fn skip_line(&mut self) {
        let line = self.bump().line;
        while self.peek().kind != Kind::Eof && self.peek().line == line {
            self.bump();
        }
    }

    /// Skips `.section .debug_xxx { ... }` (debug info only, any nesting).
    pub fn skip_section(&mut self) -> PResult<()> {
        let line = self.bump().line;
        while self.peek().kind != Kind::Eof && self.peek().line == line && !self.is_punct(b'{') {
            self.bump();
        }
        if !self.is_punct(b'{') {
            return Ok(());
        }
        // Starts on `{`, so `depth` is positive whenever a `}` is seen.
        let mut depth = 0u32;
        loop {
            match self.bump().kind {
                Kind::Eof => bail!(line, "unterminated `.section` block"),
                Kind::Punct(b'{') => depth += 1,
                Kind::Punct(b'}') => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(Kind, &str)> {
        lex(src)
            .unwrap()
            .iter()
            .map(|t| (t.kind, &src[t.start as usize..t.end as usize]))
            .collect()
    }

    #[test]
    fn tokens_of_an_instruction() {
        let k = kinds("@!%p1 ld.global.L2::128B.v2.f32 {%f1, _}, [%rd1+-16]; // c\n");
        let want = [
            (Kind::Punct(b'@'), "@"),
            (Kind::Punct(b'!'), "!"),
            (Kind::Ident, "%p1"),
            (Kind::Ident, "ld"),
            (Kind::Dot, ".global"),
            (Kind::Dot, ".L2::128B"),
            (Kind::Dot, ".v2"),
            (Kind::Dot, ".f32"),
            (Kind::Punct(b'{'), "{"),
            (Kind::Ident, "%f1"),
            (Kind::Punct(b','), ","),
            (Kind::Ident, "_"),
            (Kind::Punct(b'}'), "}"),
            (Kind::Punct(b','), ","),
            (Kind::Punct(b'['), "["),
            (Kind::Ident, "%rd1"),
            (Kind::Punct(b'+'), "+"),
            (Kind::Punct(b'-'), "-"),
            (Kind::Num, "16"),
            (Kind::Punct(b']'), "]"),
            (Kind::Punct(b';'), ";"),
            (Kind::Eof, ""),
        ];
        assert_eq!(k, want);
    }

    #[test]
    fn numbers_and_special_registers() {
        let k = kinds("%tid.x 0f3F800000 1.5e-3 9.0 0x1fU 12abc");
        let texts: Vec<_> = k.iter().map(|p| p.1).collect();
        assert_eq!(
            texts,
            [
                "%tid.x",
                "0f3F800000",
                "1.5e-3",
                "9.0",
                "0x1fU",
                "12abc",
                ""
            ]
        );
    }

    #[test]
    fn comments_dwarf_and_lines() {
        let toks = lex("/* a\n b */ x\n@@DWARF .byte 1\n// y\ny").unwrap();
        assert_eq!(toks.iter().map(|t| t.line).collect::<Vec<_>>(), [2, 5, 5]);
    }

    #[test]
    fn lex_errors_carry_lines() {
        assert_eq!(lex("a\n/* open").unwrap_err().line, 2);
        assert_eq!(lex("a\n\n\"open").unwrap_err().line, 3);
        assert!(lex("a # b").unwrap_err().message.contains("'#'"));
        assert!(lex("é").is_err());
    }

    #[test]
    fn number_literals() {
        use Imm::*;
        let cases: &[(&str, bool, bool, Option<Imm>)] = &[
            ("42", false, false, Some(Int(42))),
            ("42", true, false, Some(Int(-42))),
            ("0x1F", false, false, Some(Int(31))),
            ("0X1fU", false, false, Some(Int(31))),
            ("017", false, false, Some(Int(15))),
            ("0b101", false, false, Some(Int(5))),
            ("7U", false, false, Some(Int(7))),
            ("0", false, false, Some(Int(0))),
            ("0xFFFFFFFFFFFFFFFF", false, false, Some(Int(-1))),
            ("0f3F800000", false, false, Some(F32(0x3F80_0000))),
            ("0f3F800000", true, false, Some(F32(0xBF80_0000))),
            (
                "0d4008000000000000",
                false,
                false,
                Some(F64(0x4008_0000_0000_0000)),
            ),
            ("1.5", false, false, Some(F64(1.5f64.to_bits()))),
            ("1.5", true, true, Some(F32((-1.5f32).to_bits()))),
            ("2.5e-1", false, false, Some(F64(0.25f64.to_bits()))),
            ("1e3", false, true, Some(F32(1000f32.to_bits()))),
            ("08", false, false, None),
            ("12abc", false, false, None),
            ("0x", false, false, None),
            ("0f3F80", false, false, None),
            ("0d+008000000000000", false, false, None),
            ("18446744073709551616", false, false, None),
            ("1.5x", false, false, None),
        ];
        for &(s, neg, f32ctx, want) in cases {
            assert_eq!(
                decode_number(s, neg, f32ctx),
                want,
                "{s} neg={neg} f32={f32ctx}"
            );
        }
    }
}

/// Whole-front-end tests of what this file is responsible for: the literal rules, skipped
/// debug info, error messages and lines, and never panicking on damaged input. (Tests of
/// the tree's shape live in `parser.rs`.)
#[cfg(test)]
mod front_end_tests {
    use super::super::ast::*;
    use super::super::parser::parse;

    const HDR: &str = ".version 9.0\n.target sm_80\n.address_size 64\n";

    fn instr(src: &str) -> Instr {
        let m = parse(&format!("{HDR}.entry k() {{\n{src}\n}}")).unwrap();
        match m.functions[0].body.as_deref() {
            Some([Stmt::Instr(i)]) => i.clone(),
            other => panic!("{src}: {other:?}"),
        }
    }

    #[test]
    fn immediates_follow_the_f32_rule() {
        #[rustfmt::skip]
        let cases = [
            ("mov.b32", "0x1F", Imm::Int(31)),
            ("mov.b32", "-017", Imm::Int(-15)),
            ("mov.b32", "0b11U", Imm::Int(3)),
            ("mov.f32", "0f3F800000", Imm::F32(0x3F80_0000)),
            ("mov.f64", "0d3FF0000000000000", Imm::F64(0x3FF0_0000_0000_0000)),
            ("mov.f32", "1.5", Imm::F32(1.5f32.to_bits())),
            ("mov.b64", "1.5", Imm::F64(1.5f64.to_bits())),
            ("cvt.rn.f32.f64", "-0.5", Imm::F64((-0.5f64).to_bits())),
        ];
        for (op, lit, want) in cases {
            let ops = instr(&format!("{op} %r1, {lit};")).operands;
            assert_eq!(
                ops,
                [Operand::Reg("%r1".into()), Operand::Imm(want)],
                "{op} {lit}"
            );
        }
    }

    #[test]
    fn debug_info_is_skipped() {
        let src = format!(
            "{HDR}.file 1 \"a.cu\"\n.section .debug_abbrev\n{{\n.b8 1, 2\n.b64 $L__tmp1\n}}\n\
            @@DWARF .byte 1\n.entry k()\n{{\n.loc 1 7 0\n\
            .loc 2 107 3, function_name $L__info_string0, inlined_at 1 9 43\nret;\n}}\n\
            .section .debug_info {{ .b32 .debug_loc+659 }}\n"
        );
        let body = parse(&src).unwrap().functions[0].body.clone().unwrap();
        let ret = Instr {
            guard: None,
            opcode: "ret".into(),
            mods: vec![],
            operands: vec![],
            line: 15,
        };
        assert_eq!(body, [Stmt::Instr(ret)]);
    }

    #[test]
    fn errors_name_the_construct_and_line() {
        #[rustfmt::skip]
        let cases: &[(&str, u32, &str)] = &[
            (".bogus .u32 x;", 4, "`.bogus`"),
            (".entry k()\n{\nret;\n.frob 3;\n}", 7, "`.frob`"),
            (".entry k()\n{\nret;\n", 5, "unterminated"),
            (".entry k()\n{\nadd.s32 %r1, ], %r2;\n}", 6, "bad operand `]`"),
            (".entry k()\n{\nmov.u32 %r1, 12abc;\n}", 6, "bad number `12abc`"),
            (".entry k()\n{\nld.u32 %r1, [tex, %r2];\n}", 6, "unsupported address"),
            (".entry k()\n{\nmov.u32 %r1, 1\nret;\n}", 7, "`ret`"),
            (".entry k()\n{\n$L_tbl: .branchtargets $L1, $L2;\n}", 6, ".branchtargets"),
            (".entry k()\n{\n.callprototype (.param .b32 r) _ ();\n}", 6, ".callprototype"),
            (".global .texref t;", 4, "`.texref`"),
            (".global .u64 p = {sym};", 4, "symbolic"),
            (".entry k()\n.explicitcluster\n{\n}", 5, "`.explicitcluster`"),
            (".entry k()\n{\n%r1: ret;\n}", 6, "label"),
            (".entry k()\n{\ncall.uni (r), %rd1, (a);\n}", 6, "indirect"),
            (".entry k()\n{\n/* open\nret;\n}", 6, "unterminated `/*`"),
        ];
        for &(src, line, needle) in cases {
            let got = parse(&format!("{HDR}{src}")).unwrap_err();
            assert!(
                got.line == line && got.message.contains(needle),
                "{src:?} gave {got:?}"
            );
        }
        assert_eq!(parse(".target sm_80\n").unwrap_err().line, 1);
        assert!(parse("").unwrap_err().message.contains(".version"));
        let deep = format!("{HDR}.entry k(){}", "{".repeat(5000));
        assert!(parse(&deep).unwrap_err().message.contains("nesting"));
    }

    /// Truncated and byte-garbled copies of `src` must parse to `Ok` or `Err`: no panic, no
    /// hang. A fixed-seed LCG keeps failures reproducible.
    fn no_panic_on_damage(src: &str, truncations: usize, mutations: usize) {
        let step = (src.len() / truncations.max(1)).max(1);
        for cut in (0..src.len())
            .step_by(step)
            .filter(|&i| src.is_char_boundary(i))
        {
            let _ = parse(&src[..cut]);
        }
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let junk = b"{}[]();,.:@!|+-=%$_0x\"/*\n ";
        for _ in 0..mutations {
            let mut bytes = src.as_bytes().to_vec();
            for _ in 0..3 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let pos = (seed >> 33) as usize % bytes.len().max(1);
                if let Some(b) = bytes.get_mut(pos) {
                    *b = junk[(seed >> 20) as usize % junk.len()];
                }
            }
            if let Ok(s) = std::str::from_utf8(&bytes) {
                let _ = parse(s);
            }
        }
    }

    #[test]
    fn damaged_input_never_panics() {
        let src = format!(
            "{HDR}.global .align 4 .b8 t[2] = {{1, 2}};\n.visible .entry k(.param .u64 p)\n\
            .maxntid 32\n{{\n.reg .b32 %r<4>;\n{{ .reg .f16 lo; mov.b32 {{lo, _}}, %r1; }}\n\
            @!%p1 bra $L1;\n$L1:\nld.param.u64 %rd1, [p+-8];\ncall.uni (rv), f, (a, 0f3F800000);\n\
            .pragma \"nounroll\";\nret;\n}}\n"
        );
        assert!(parse(&src).is_ok());
        no_panic_on_damage(&src, src.len(), 3000);
    }

    /// Set `VGPU_TEST_PTX_DIR` to a folder of nvcc output to check that real modules parse
    /// (and that damaged copies of them fail cleanly).
    #[test]
    fn real_ptx_from_env_dir() {
        let Ok(dir) = std::env::var("VGPU_TEST_PTX_DIR") else {
            eprintln!("skipped: VGPU_TEST_PTX_DIR is not set");
            return;
        };
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("VGPU_TEST_PTX_DIR readable") {
            let path = entry.expect("directory entry").path();
            if path.extension().is_some_and(|e| e == "ptx") {
                let src = std::fs::read_to_string(&path).expect("readable .ptx");
                let m = parse(&src).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(!m.functions.is_empty(), "{}: no functions", path.display());
                no_panic_on_damage(&src, 20, 20);
                n += 1;
            }
        }
        eprintln!("parsed {n} .ptx files from {dir}");
        assert!(n > 0, "no .ptx files in {dir}");
    }
}
