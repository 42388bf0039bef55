//! The documentation (doc/s6-tlsd-io.html and the mdoc page doc/s6-tlsd-io.1)
//! and the program must not drift apart:
//!
//! - the man page passes `mandoc -Tlint` with nothing worse than STYLE notes;
//! - every option either document names is accepted by the binary, and every
//!   option that src/cli.rs accepts is named in both documents;
//! - the exit codes both documents list are exactly those src/error.rs and
//!   src/main.rs produce;
//! - every fatal message that src/ can print (the format strings given to
//!   `Error::BadUsage`, `Config`, `Setup`, `Tls`, `errno`, `sys`, the usage
//!   line and the timeout) appears in both documents, with any text standing
//!   in for its `{...}` parts.
//! - the log of two connections that the README and the HTML page quote is
//!   the same in both, each engine line naming its connection in the
//!   engine's form.
//!
//! Sources are read as text, relative to the crate root: this test knows
//! nothing of the crate's types, so that it keeps working while they change.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_s6-tlsd-io");
const HTML: &str = "doc/s6-tlsd-io.html";
const MAN: &str = "doc/s6-tlsd-io.1";

/// How much text a `{...}` of a message format may stand for in the docs.
const MAX_GAP: usize = 80;

fn path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(path(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// Source text without its unit tests, whose strings are not messages.
fn code(rel: &str) -> String {
    let text = read(rel);
    match text.find("#[cfg(test)]") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

fn mandoc(args: &[&str]) -> Output {
    match Command::new("mandoc").args(args).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "mandoc(1) is not installed: install the Debian package `mandoc` \
             (apt-get install mandoc) to check the man page"
        ),
        Err(e) => panic!("cannot run mandoc: {e}"),
    }
}

// ---------------------------------------------------------------------------
// The documents as plain text.

/// The HTML page with its markup replaced by spaces and its entities decoded.
/// Replacing a tag by a space keeps a placeholder apart from what precedes
/// it: `--<em>name</em>` reads `-- name`, not an option called `--name`.
fn html_text() -> String {
    let html = read(HTML);
    let mut out = String::with_capacity(html.len());
    let mut rest = html.as_str();
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        out.push(' ');
        rest = &rest[i..];
        let end = if rest.starts_with("<!--") {
            rest.find("-->").map(|j| j + 3)
        } else {
            rest.find('>').map(|j| j + 1)
        };
        rest = &rest[end.unwrap_or(rest.len())..];
    }
    out.push_str(rest);
    out.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The man page as mandoc renders it, on lines long enough never to wrap.
/// Bold (`c\bc`) becomes plain; underlined text (`_\bc`: the `Ar`
/// placeholders) becomes a single `\u{1}`, for the same reason as the
/// spaces of `html_text`.
fn man_text() -> String {
    let out = mandoc(&["-Tascii", "-Owidth=1000", &path(MAN).to_string_lossy()]);
    assert!(
        out.status.success(),
        "mandoc cannot render {MAN}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = String::from_utf8_lossy(&out.stdout);
    let chars: Vec<char> = raw.chars().collect();
    let mut text = String::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        match (chars[i], chars.get(i + 1), chars.get(i + 2)) {
            ('_', Some('\u{8}'), Some(_)) => {
                if !text.ends_with('\u{1}') {
                    text.push('\u{1}');
                }
                i += 3;
            }
            (_, Some('\u{8}'), Some(&c)) => {
                text.push(c);
                i += 3;
            }
            (c, _, _) => {
                text.push(c);
                i += 1;
            }
        }
    }
    text
}

fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------------------
// (a) mandoc -Tlint

#[test]
fn man_page_has_nothing_worse_than_style_notes() {
    let file = path(MAN).to_string_lossy().into_owned();
    let out = mandoc(&["-Tlint", &file]);
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Lines about the system's own manual database do not concern the page.
    let bad: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with(&format!("mandoc: {file}")))
        .filter(|l| !l.contains(": STYLE: "))
        .collect();
    assert!(bad.is_empty(), "mandoc -Tlint {MAN}:\n{}", bad.join("\n"));
}

// ---------------------------------------------------------------------------
// (b) options

/// Every `-x` and `--long-name` in a text: a dash that does not follow a
/// word character, then either one letter that no word character follows,
/// or a second dash and a lowercase name. `--` alone and `-x509` are not
/// options.
fn options_in(text: &str) -> BTreeSet<String> {
    let b = text.as_bytes();
    let word = |c: Option<&u8>| c.is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_');
    let mut found = BTreeSet::new();
    for i in 0..b.len() {
        if b[i] != b'-' || (i > 0 && (word(b.get(i - 1)) || b[i - 1] == b'-')) {
            continue;
        }
        if b.get(i + 1) == Some(&b'-') {
            let start = i + 2;
            let mut end = start;
            while end < b.len() && (b[end].is_ascii_lowercase() || b[end] == b'-') {
                end += 1;
            }
            let name = text[start..end].trim_end_matches('-');
            if name.starts_with(|c: char| c.is_ascii_lowercase()) && !word(b.get(end)) {
                found.insert(format!("--{name}"));
            }
        } else if b.get(i + 1).is_some_and(u8::is_ascii_alphabetic) && !word(b.get(i + 2)) {
            found.insert(text[i..i + 2].to_string());
        }
    }
    found
}

/// What src/cli.rs accepts: (option, takes a value).
fn accepted_options() -> Vec<(String, bool)> {
    let src = code("src/cli.rs");
    let section = |from: &str, to: &str| -> String {
        let start = src
            .find(from)
            .unwrap_or_else(|| panic!("src/cli.rs has no `{from}`: update tests/docs.rs"));
        let len = src[start..]
            .find(to)
            .unwrap_or_else(|| panic!("src/cli.rs: no `{to}` after `{from}`"));
        src[start..start + len].to_string()
    };
    let mut options = Vec::new();
    // `'v' => set_short_value(...)`: a short option, valued if it is set so.
    for line in section("Short(c) => match c", "other =>").lines() {
        let l = line.trim().as_bytes();
        if l.len() > 6 && l[0] == b'\'' && l[2] == b'\'' && line.contains("=>") {
            let valued = line.contains("set_short_value");
            options.push((format!("-{}", l[1] as char), valued));
        }
    }
    // `"name" =>` arms of the long option tables.
    for (function, valued) in [("fn set_long_value", true), ("fn set_long_flag", false)] {
        for line in section(function, "_ =>").lines() {
            let l = line.trim();
            if let Some(rest) = l.strip_prefix('"') {
                if let Some((name, tail)) = rest.split_once('"') {
                    if !name.is_empty() && tail.trim_start().starts_with("=>") {
                        options.push((format!("--{name}"), valued));
                    }
                }
            }
        }
    }
    let names: BTreeSet<&str> = options.iter().map(|(o, _)| o.as_str()).collect();
    for known in [
        "-S",
        "-s",
        "-v",
        "-d",
        "--close-notify",
        "--sni",
        "--verbosity",
    ] {
        assert!(
            names.contains(known),
            "reading src/cli.rs found no {known} (found {names:?}): update tests/docs.rs"
        );
    }
    options
}

/// Runs the binary with an empty environment, so that once the command line
/// is parsed it stops at once on the missing key pair.
fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .expect("run s6-tlsd-io");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn parses(option: &str, valued: bool) -> Result<(), String> {
    let arg = match (valued, option.starts_with("--")) {
        (true, true) => vec![format!("{option}=0")],
        (true, false) => vec![option.to_string(), "0".into()],
        (false, _) => vec![option.to_string()],
    };
    let mut args: Vec<&str> = arg.iter().map(String::as_str).collect();
    args.extend(["3", "4"]);
    let (code, stderr) = run(&args);
    // Past the command line, the first complaint is about the environment.
    let expected = [
        "s6-tlsd-io: fatal: CERTFILE not set\n",
        "s6-tlsd-io: fatal: no suitable keypairs found in the environment\n",
        // -t: the same complaint, in the check mode's report
        "s6-tlsd-io: error: CERTFILE not set\n",
    ];
    if expected.contains(&stderr.as_str()) && matches!(code, Some(100) | Some(96)) {
        Ok(())
    } else {
        Err(format!("{args:?}: exit {code:?}, {stderr:?}"))
    }
}

#[test]
fn documented_options_and_accepted_options_are_the_same() {
    let accepted = accepted_options();
    let valued = |o: &str| accepted.iter().any(|(a, v)| a == o && *v);
    for (doc, text) in [(HTML, html_text()), (MAN, man_text())] {
        let documented = options_in(&text);
        let mut problems = Vec::new();
        for option in &documented {
            if let Err(why) = parses(option, valued(option)) {
                problems.push(format!(
                    "{doc} documents {option}, which the binary refuses: {why}"
                ));
            }
        }
        for (option, _) in &accepted {
            if !documented.contains(option) {
                problems.push(format!(
                    "src/cli.rs accepts {option}, which {doc} never names"
                ));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}

#[test]
fn the_binary_refuses_near_misses() {
    // Otherwise "accepted" above would prove nothing.
    let accepted = accepted_options();
    for (args, message) in [
        (&["-Q", "3", "4"][..], "unrecognized short option: Q"),
        (
            &["--close-notif", "3", "4"],
            "unrecognized boolean option: --close-notif",
        ),
        (
            &["--sni-levels=1", "3", "4"],
            "unrecognized option with argument: --sni-levels=1",
        ),
        (
            &["--verbosity", "3", "4"],
            "unrecognized boolean option: --verbosity",
        ),
    ] {
        if !args[0].ends_with("verbosity") {
            assert!(!accepted.iter().any(|(o, _)| o == args[0]), "{args:?}");
        }
        let (code, stderr) = run(args);
        assert_eq!(
            (code, stderr.as_str()),
            (
                Some(100),
                format!("s6-tlsd-io: fatal: {message}\n").as_str()
            ),
            "{args:?}"
        );
    }
    for (option, valued) in &accepted {
        parses(option, *valued).unwrap_or_else(|why| panic!("src/cli.rs lists {option}: {why}"));
    }
}

// ---------------------------------------------------------------------------
// (b) exit codes

fn leading_number(s: &str) -> Option<u32> {
    let digits: String = s
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The codes listed in the HTML section whose heading says "Exit codes".
fn html_exit_codes() -> BTreeSet<u32> {
    let html = read(HTML);
    let start = html
        .find("Exit codes")
        .expect("the HTML page has no Exit codes section");
    let section = &html[start..];
    let section = &section[..section.find("<h2").unwrap_or(section.len())];
    section
        .split("<li>")
        .skip(1)
        .filter_map(leading_number)
        .collect()
}

/// The `.It` entries of the man page's EXIT STATUS section.
fn man_exit_codes() -> BTreeSet<u32> {
    let man = read(MAN);
    let start = man
        .find(".Sh EXIT STATUS")
        .expect("the man page has no EXIT STATUS");
    man[start..]
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with(".Sh "))
        .filter_map(|l| l.strip_prefix(".It "))
        .filter_map(leading_number)
        .collect()
}

/// The codes after `=>` in `fn exit_code`, and the 0 of a normal exit.
fn source_exit_codes() -> BTreeSet<u32> {
    let src = code("src/error.rs");
    let start = src
        .find("fn exit_code")
        .expect("src/error.rs has no fn exit_code");
    let body = &src[start..];
    let body = &body[..body.find("\n    }\n").expect("end of fn exit_code")];
    let mut codes: BTreeSet<u32> = body
        .split("=>")
        .skip(1)
        .filter_map(leading_number)
        .collect();
    assert!(
        codes.len() >= 5,
        "reading src/error.rs found only {codes:?}: update tests/docs.rs"
    );
    assert!(
        code("src/main.rs").contains("Ok(()) => 0"),
        "src/main.rs no longer says `Ok(()) => 0`: update tests/docs.rs"
    );
    codes.insert(0);
    codes
}

#[test]
fn documented_exit_codes_are_those_of_the_source() {
    let source = source_exit_codes();
    assert_eq!(html_exit_codes(), source, "{HTML} vs src/error.rs");
    assert_eq!(man_exit_codes(), source, "{MAN} vs src/error.rs");
}

// ---------------------------------------------------------------------------
// (b) fatal messages

/// A Rust string literal starting at `s[0] == '"'`: its value and its length.
fn string_literal(s: &str) -> (String, usize) {
    let mut value = String::new();
    let mut chars = s.char_indices().skip(1).peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (value, i + 1),
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('n') => value.push('\n'),
                Some('t') => value.push('\t'),
                Some('0') => value.push('\0'),
                Some('\n') => {
                    while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
                        chars.next();
                    }
                }
                Some(c) => value.push(c),
                None => break,
            },
            c => value.push(c),
        }
    }
    panic!("unterminated string literal: {}", &s[..s.len().min(60)])
}

/// The text inside the parentheses that open at `s[0] == '('`, and the
/// first string literal in it, if any.
fn first_literal_in_call(s: &str) -> Option<String> {
    let mut depth = 0usize;
    let mut i = 0;
    let mut first = None;
    while i < s.len() {
        match s.as_bytes()[i] {
            b'"' => {
                let (value, len) = string_literal(&s[i..]);
                first.get_or_insert(value);
                i += len;
                continue;
            }
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return first;
                }
            }
            _ => {}
        }
        i += 1;
    }
    first
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let p = entry.expect("read src/").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Every message format of src/, as printed after `s6-tlsd-io: fatal: `.
fn source_messages() -> BTreeSet<String> {
    let mut files = Vec::new();
    rust_files(&path("src"), &mut files);
    let root = path("");
    let mut messages = BTreeSet::new();
    for file in files {
        let rel = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let src = code(&rel);
        for (call, sys) in [
            ("Error::BadUsage(", false),
            ("Error::Config(", false),
            ("Error::Setup(", false),
            ("Error::Tls(", false),
            ("Error::Holder(", false),
            ("Error::errno(", true),
            ("Error::sys(", true),
        ] {
            for (at, _) in src.match_indices(call) {
                let open = at + call.len() - 1;
                if let Some(format) = first_literal_in_call(&src[open..]) {
                    messages.insert(match sys {
                        true => format!("unable to {format}: {{reason}}"),
                        false => format,
                    });
                }
            }
        }
    }
    let error_rs = code("src/error.rs");
    let at = error_rs
        .find("pub const USAGE: &str = ")
        .expect("USAGE in src/error.rs");
    let quote = at + error_rs[at..].find('"').unwrap();
    let usage = string_literal(&error_rs[quote..]).0;
    messages.insert(format!("usage: {usage}"));
    assert!(
        error_rs.contains("handshake timed out\""),
        "src/error.rs no longer prints `handshake timed out`: update tests/docs.rs"
    );
    messages.insert("handshake timed out".into());
    messages
}

/// The fixed parts of a format: `{...}` and `{}` split it.
fn pieces(format: &str) -> Vec<String> {
    let mut pieces = vec![String::new()];
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                pieces.last_mut().unwrap().push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                pieces.last_mut().unwrap().push('}');
            }
            '{' => {
                for c in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                }
                pieces.push(String::new());
            }
            c => pieces.last_mut().unwrap().push(c),
        }
    }
    pieces
}

/// Whether `pieces` follow each other in `text`, each within MAX_GAP bytes
/// of the end of the one before.
fn follows(text: &str, pos: usize, pieces: &[String]) -> bool {
    let Some((first, rest)) = pieces.split_first() else {
        return true;
    };
    let mut end = (pos + MAX_GAP + first.len()).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let window = &text[pos..end];
    window
        .match_indices(first.as_str())
        .any(|(i, _)| follows(text, pos + i + first.len(), rest))
}

/// Whitespace runs as single spaces, kept at the ends (unlike `squeeze`).
fn collapse(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if !c.is_whitespace() {
            out.push(c);
        } else if !out.ends_with(' ') {
            out.push(' ');
        }
    }
    out
}

/// Whether `format` appears in `text` (squeezed), any text of at most
/// MAX_GAP bytes standing in for each of its `{...}`.
fn documented(text: &str, format: &str) -> bool {
    let pieces: Vec<String> = pieces(format).iter().map(|p| collapse(p)).collect();
    let (first, rest) = pieces.split_first().unwrap();
    if first.is_empty() {
        return text.char_indices().any(|(i, _)| follows(text, i, rest));
    }
    text.match_indices(first.as_str())
        .any(|(i, _)| follows(text, i + first.len(), rest))
}

/// The fixed messages of the spec's tables, as a backstop should reading
/// src/ ever find less than it should.
const SPEC_MESSAGES: &[&str] = &[
    "unrecognized short option: {}",
    "unrecognized boolean option: --{}",
    "unrecognized option with argument: --{}={}",
    "verbosity must be an unsigned integer",
    "handshake-timeout must be an unsigned integer",
    "sni-level must be an unsigned integer",
    "notification-fd must be an unsigned integer",
    "CERTFILE not set",
    "KEYFILE not set",
    "environment variable KEYFILE:{} not paired with the corresponding CERTFILE",
    "CADIR or CAFILE not set",
    "invalid $TLS_UID",
    "no suitable keypairs found in the environment",
    "no trust anchor found in {}",
    "handshake timed out",
    "the TLS engine closed the connection during the handshake: {}",
    "remote closed connection without a close_notify",
    "unable to read from remote: Connection reset by peer",
    "unable to write to local: {}",
    "unable to write post-handshake data: {}",
];

#[test]
fn every_fatal_message_is_documented() {
    let messages = source_messages();
    assert!(
        messages.len() >= 25,
        "reading src/ found only {} messages: update tests/docs.rs\n{messages:#?}",
        messages.len()
    );
    let all: Vec<&str> = messages
        .iter()
        .map(String::as_str)
        .chain(SPEC_MESSAGES.iter().copied())
        .collect();
    for (doc, text) in [(HTML, squeeze(&html_text())), (MAN, squeeze(&man_text()))] {
        let missing: Vec<&&str> = all.iter().filter(|m| !documented(&text, m)).collect();
        assert!(
            missing.is_empty(),
            "{doc} does not document these messages:\n{missing:#?}"
        );
    }
}

#[test]
fn the_message_matcher_is_strict_enough() {
    let text = "s6-tlsd-io: fatal: invalid KEYFILE file /k.pem: the file is empty";
    assert!(documented(text, "invalid {} file {}: {reason}"));
    assert!(documented(text, "{} file {}: {reason}"));
    assert!(!documented(text, "invalid {} files {}: {reason}"));
    assert!(!documented(text, "unable to read {} file {}: {}"));
    assert_eq!(pieces("a {x} b {{c}} {}"), ["a ", " b {c} ", ""]);
    let mut opts = options_in("use -v 2, -SJy, --sni-level=2, -x509, -- or s6-tlsd-io -k\u{1}");
    assert!(opts.remove("-v") && opts.remove("--sni-level") && opts.remove("-k"));
    assert!(opts.is_empty(), "{opts:?}");
}

// ---------------------------------------------------------------------------
// (c) the two documents list the same variables and options

/// The text between `from` and the next `to` after it.
fn between<'a>(text: &'a str, from: &str, to: &str, doc: &str) -> &'a str {
    let start = text
        .find(from)
        .unwrap_or_else(|| panic!("{doc} has no `{from}`: update tests/docs.rs"));
    let rest = &text[start + from.len()..];
    &rest[..rest.find(to).unwrap_or(rest.len())]
}

/// Whether `s` is an environment variable's name: capitals, digits and
/// underscores, starting with a capital, at least one underscore or a
/// known name (so that `PEM` or `DER` are not taken for one).
fn is_variable(s: &str) -> bool {
    s.len() > 3
        && s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && (s.contains('_') || s.ends_with("FILE") || s.ends_with("DIR") || s.starts_with("TCP"))
}

/// The variables of the HTML page's "Environment variables" section: each
/// `<tt>NAME</tt>`, or `<tt>NAME:<em>x</em></tt>` as `NAME:x`.
fn html_variables() -> BTreeSet<String> {
    let html = read(HTML);
    let section = between(&html, "<h2> Environment variables </h2>", "<h2", HTML);
    let mut found = BTreeSet::new();
    for piece in section.split("<tt>").skip(1) {
        let Some((inside, _)) = piece.split_once("</tt>") else {
            continue;
        };
        let name = inside.replace("<em>", "").replace("</em>", "");
        let (base, suffix) = match name.split_once(':') {
            Some((base, x)) if !x.is_empty() => (base.to_string(), ":x"),
            _ => (name.clone(), ""),
        };
        if is_variable(&base) {
            found.insert(format!("{base}{suffix}"));
        }
    }
    found
}

/// The variables of the man page's ENVIRONMENT section: each `Ev NAME`,
/// or `Ev NAME : Ns Ar x` as `NAME:x`.
fn man_variables() -> BTreeSet<String> {
    let man = read(MAN);
    let section = between(&man, ".Sh ENVIRONMENT", ".Sh ", MAN);
    let mut found = BTreeSet::new();
    for line in section.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        for (i, w) in words.iter().enumerate() {
            if *w != "Ev" && *w != ".Ev" {
                continue;
            }
            let Some(name) = words.get(i + 1).filter(|n| is_variable(n)) else {
                continue;
            };
            let named = words.get(i + 2) == Some(&":") && words.get(i + 4) == Some(&"Ar");
            found.insert(format!("{name}{}", if named { ":x" } else { "" }));
        }
    }
    found
}

/// Every variable src/ reads by name: a string literal that names one,
/// given to a lookup (`env.get("NAME")`, `id_from_env(env, "NAME")`,
/// `is("NAME", ...)`) or to a `const` (`VAR: &str = "NAME"`).
fn source_variables() -> BTreeSet<String> {
    let mut files = Vec::new();
    rust_files(&path("src"), &mut files);
    let mut found = BTreeSet::new();
    for file in files {
        let src = std::fs::read_to_string(&file).unwrap();
        let src = &src[..src.find("#[cfg(test)]").unwrap_or(src.len())];
        for (at, _) in src.match_indices('"') {
            let rest = &src[at + 1..];
            let name = &rest[..rest.find('"').unwrap_or(0)];
            let before = src[..at].trim_end();
            let lookup = ["get(", "is(", "env,", "&str ="]
                .iter()
                .any(|m| before.ends_with(m));
            if lookup && is_variable(name) {
                found.insert(name.to_string());
            }
        }
    }
    assert!(
        found.len() >= 8,
        "reading src/ found only {found:?}: update tests/docs.rs"
    );
    found
}

#[test]
fn both_documents_list_the_same_variables_and_every_one_src_reads() {
    let (html, man) = (html_variables(), man_variables());
    assert_eq!(html, man, "{HTML} vs {MAN}");
    for name in ["CERTFILE", "KEYFILE:x", "TLS_ALPN:x", "TCPREMOTEIP"] {
        assert!(html.contains(name), "{name} not found in {html:?}");
    }
    let missing: Vec<_> = source_variables()
        .into_iter()
        .filter(|v| !html.contains(v))
        .collect();
    assert!(
        missing.is_empty(),
        "src/ reads {missing:?}, which the documents do not list"
    );
}

#[test]
fn both_documents_name_the_same_options() {
    let (html, man) = (options_in(&html_text()), options_in(&man_text()));
    assert_eq!(
        html.symmetric_difference(&man).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "options named by only one of {HTML} and {MAN}"
    );
}

// ---------------------------------------------------------------------------
// The threat model: each claim names the test that shows it.

/// The words of the threat model section of a document that look like a
/// Rust test's name (four or more lowercase words joined by `_`).
fn cited_tests(text: &str, start: &str, end: &str) -> BTreeSet<String> {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("no {start:?} in the document"));
    let rest = &text[from + start.len()..];
    let section = &rest[..rest.find(end).unwrap_or(rest.len())];
    section
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
        .filter(|w| w.split('_').filter(|p| !p.is_empty()).count() >= 4)
        .map(str::to_string)
        .collect()
}

/// Every test function's name under tests/ and src/.
fn test_names() -> BTreeSet<String> {
    let mut files = Vec::new();
    rust_files(&path("src"), &mut files);
    rust_files(&path("tests"), &mut files);
    let mut names = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read a source file");
        let mut after_test = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with("#[test]") {
                after_test = true;
            } else if after_test {
                if let Some(rest) = line.strip_prefix("fn ") {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    names.insert(name);
                    after_test = false;
                }
            }
        }
    }
    names
}

#[test]
fn the_threat_model_cites_tests_that_exist_and_both_documents_cite_the_same() {
    let html = cited_tests(&read(HTML), "<h2 id=\"threats\">", "<h2");
    let man = cited_tests(&read(MAN), ".Ss Threat model", "\n.S");
    assert!(html.len() >= 20, "too few tests cited: {html:?}");
    assert_eq!(html, man, "the HTML page and the man page cite other tests");
    let tests = test_names();
    let missing: Vec<_> = html.difference(&tests).collect();
    assert!(
        missing.is_empty(),
        "the threat model cites tests that do not exist: {missing:?}"
    );
}

// ---------------------------------------------------------------------------
// (d) the quoted log

/// The lines of the block of `text` that starts with `first`, up to the
/// block's end (a line that starts with "```" or "</pre>").
fn quoted_log(text: &str, first: &str) -> Vec<String> {
    let at = text
        .find(first)
        .unwrap_or_else(|| panic!("no quoted log starting {first:?}"));
    text[at..]
        .lines()
        .take_while(|l| !l.starts_with("```") && !l.starts_with("</pre>"))
        .map(str::to_string)
        .collect()
}

/// The log the README and the HTML page quote (two clients at once under
/// s6-tcpserver) is the same in both, and shows the real form: every
/// engine line names its connection `pid N engine M ip_port: ` (src/log.rs;
/// tests/logging.rs checks real lines), N the pid of the super-server's
/// accept line for that address, before it, and every connection has its
/// end lines.
#[test]
fn the_quoted_log_shows_the_real_form_of_a_connections_lines() {
    const FIRST: &str = "s6-tcpserverd: info: accept ";
    let readme = quoted_log(&read("README.md"), FIRST);
    assert_eq!(readme, quoted_log(&read(HTML), FIRST), "README and {HTML}");
    let mut accepted: Vec<(String, String)> = Vec::new();
    for (i, line) in readme.iter().enumerate() {
        if let Some(rest) = line.strip_prefix(FIRST) {
            let words: Vec<&str> = rest.split(' ').collect();
            assert_eq!(words[1], "pid", "{line}");
            accepted.push((words[2].to_string(), words[0].to_string()));
            continue;
        }
        let Some((level, rest)) = line
            .strip_prefix("s6-tlsd-io: ")
            .and_then(|l| l.split_once(": "))
        else {
            continue;
        };
        assert!(["info", "fatal"].contains(&level), "{line}");
        let (name, _) = rest.split_once(": ").expect(line);
        let words: Vec<&str> = name.split(' ').collect();
        assert!(
            words.len() == 5
                && words[0] == "pid"
                && words[2] == "engine"
                && [words[1], words[3]]
                    .iter()
                    .all(|n| n.bytes().all(|b| b.is_ascii_digit())),
            "line {i}: {line}"
        );
        let pair = (words[1].to_string(), words[4].to_string());
        assert!(accepted.contains(&pair), "no accept line before: {line}");
    }
    for (pid, _) in &accepted {
        let end = format!("s6-tcpserverd: info: end pid {pid} exitcode ");
        assert!(readme.iter().any(|l| l.starts_with(&end)), "{pid}");
        let named = format!(": pid {pid} engine ");
        assert!(
            readme
                .iter()
                .any(|l| l.contains(&named) && l.contains(": connection ended after ")),
            "{pid}"
        );
    }
}
