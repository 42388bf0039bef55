//! Informational and debug lines on stderr (`-v 2`, `-v 3`), in skalibs'
//! format, and the fatal line main prints before it exits.
//!
//! Every line names its connection after the level (`s6-tlsd-io: info:
//! pid 1234 engine 1235 127.0.0.1_40404: handshake complete: ...`): each
//! connection is an engine of its own, and lines of engines running at once
//! interleave in one log. [`Log::connection`] computes that name from the
//! process and the environment (see [`name`]).
//!
//! No line can be forged by a peer. Whatever went into a line (a client
//! certificate's subject, an ALPN offer, a rustls error, a file name),
//! every line of a connection leaves through [`clean`] (`-t`'s report,
//! check.rs, prints the operator's configuration, nothing a peer wrote, and
//! writes its own), which escapes the characters that
//! could end it or rewrite what a reader sees: controls (newline, CR, ESC,
//! and C1's, which some terminals obey too), the Unicode line and
//! paragraph separators, and the bidirectional controls that can show a
//! line's text in another order. Escaping the whole line, not each value
//! put into it, leaves no value to forget. A peer's bytes that are not
//! UTF-8 never get this far raw: what reaches a line is text already
//! ([`bytes`] for a byte string, lossy decoding elsewhere).

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::os::fd::AsFd;

use crate::env::Env;
use crate::error::PROG;

#[derive(Clone, Copy)]
pub struct Log {
    verbosity: u32,
    /// What each line starts with, after the level; empty: nothing.
    context: &'static str,
}

impl Log {
    pub fn new(verbosity: u32) -> Log {
        Log {
            verbosity,
            context: "",
        }
    }

    /// The log of this process's connection, each line naming it (see
    /// [`name`]). Computed once, and leaked, so that `Log` stays a `Copy`
    /// value.
    pub fn connection(verbosity: u32, env: &Env) -> Log {
        let name = name(
            std::os::unix::process::parent_id(),
            std::process::id(),
            env.remote().as_deref(),
        );
        Log {
            verbosity,
            context: Box::leak(name.into_boxed_str()),
        }
    }

    /// The connection's name, for a fatal error's line (error.rs).
    pub fn context(&self) -> &'static str {
        self.context
    }

    pub fn info(&self, args: fmt::Arguments) {
        if self.verbosity >= 2 {
            emit("info", self.context, args);
        }
    }

    /// Something the operator may want to know, but that does not stop the
    /// engine (`-v 2`, like info: upstream has no such case).
    pub fn warn(&self, args: fmt::Arguments) {
        if self.verbosity >= 2 {
            emit("warning", self.context, args);
        }
    }

    /// A warning shown at the default verbosity, as skalibs' warnings
    /// are (upstream's own): only `-v 0` silences it.
    pub fn warn_by_default(&self, args: fmt::Arguments) {
        if self.verbosity >= 1 {
            emit("warning", self.context, args);
        }
    }

    pub fn debug(&self, args: fmt::Arguments) {
        if self.verbosity >= 3 {
            emit("debug", self.context, args);
        }
    }
}

/// `pid 1234 engine 1235 127.0.0.1_40404`: the connection as the
/// super-server knows it, then this engine, then the client.
///
/// `pid` is the engine's parent: the process the super-server spawned for
/// the connection and names in its own lines (s6-tcpserverd's `accept
/// 127.0.0.1_40404 pid 1234` and `end pid 1234 exitcode 0`, s6-ipcserverd's
/// the same, tcpserver's `pid 1234 from`, `ok 1234`, `end 1234`), which
/// s6-tlsd and s6-ucspitlsd both are or exec into (each starts the engine
/// as its child, then becomes the application), as proxy-server does (it
/// names itself `proxy-server: pid 1234`), and the pid s6-ucspitlsd's own
/// `pid 1234 accepted opportunistic TLS` names. So `grep -wF 'pid 1234'`
/// finds all of a connection's lines, the super-server's included, and no
/// other's. A parent that is already gone (the engine was reparented to
/// init) is not the connection's: then the engine alone.
///
/// `engine` is this process, for ps and kill. The client is as the
/// super-server, or proxy-server behind a load balancer, exported it
/// (env.rs): it may differ from the address in the super-server's line,
/// which is why the pid is the name.
fn name(parent: u32, engine: u32, client: Option<&str>) -> String {
    let mut name = match parent {
        0 | 1 => format!("engine {engine}"),
        parent => format!("pid {parent} engine {engine}"),
    };
    if let Some(client) = client {
        name.push(' ');
        name.push_str(client);
    }
    name
}

/// One line, one write(2). A reader of stderr that is slow or gone (a full
/// s6-log pipe) must never stall the tunnel: a line that stderr cannot take
/// at once is dropped. Lines are shorter than PIPE_BUF, so a pipe with room
/// takes each one whole.
fn emit(level: &str, context: &str, args: fmt::Arguments) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let stderr = std::io::stderr();
    let fd = stderr.as_fd();
    let mut ready = [PollFd::new(fd, PollFlags::POLLOUT)];
    if !matches!(poll(&mut ready, PollTimeout::ZERO), Ok(1)) {
        return;
    }
    let sep = if context.is_empty() { "" } else { ": " };
    let mut line = cleaned(format!("{PROG}: {level}: {context}{sep}{args}"));
    // On a character's boundary: truncate panics elsewhere.
    let mut end = line.len().min(4000);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line.truncate(end);
    line.push('\n');
    let _ = nix::unistd::write(fd, line.as_bytes());
}

/// The fatal line of an error (or any line main prints as it exits),
/// cleaned as every line is. Waits for room: nothing else is left to do.
pub fn fatal(line: &dyn fmt::Display) {
    use std::io::Write;
    let line = cleaned(line.to_string()) + "\n";
    // Nothing more can be done if stderr itself is gone.
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// `line` with every character that could break it or disguise it escaped
/// (see the module's comment): `\t`, `\n`, `\r` and `\xHH` for ASCII's,
/// as [`bytes`] writes them, `\u{HHHH}` for the others. A backslash stays
/// as it is: in a value a peer wrote, its own escaping doubles it
/// ([`subject`], [`bytes`]), so that a real newline (`\n`) and a written
/// backslash-n (`\\n`) read differently.
pub fn clean(line: &str) -> Cow<'_, str> {
    if !line.chars().any(escaped) {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 16);
    for c in line.chars() {
        match c {
            _ if !escaped(c) => out.push(c),
            '\u{0}'..='\u{7f}' => out.extend(std::ascii::escape_default(c as u8).map(char::from)),
            _ => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    Cow::Owned(out)
}

/// `line`, cleaned: the same String when there was nothing to escape.
fn cleaned(line: String) -> String {
    match clean(&line) {
        Cow::Owned(escaped) => escaped,
        Cow::Borrowed(_) => line,
    }
}

fn escaped(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' // line and paragraph separators
            | '\u{061c}' | '\u{200e}' | '\u{200f}' // bidirectional marks
            | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' // embeddings, overrides, isolates
        )
}

/// A byte string a peer sent (an ALPN protocol name), as text: printable
/// ASCII as it is, `\\`, `\"` and `\'` escaped, every other byte `\xHH`
/// (or `\t`, `\n`, `\r`), so that no byte is lost and none reaches the
/// line raw.
pub fn bytes(b: &[u8]) -> impl fmt::Display + '_ {
    b.escape_ascii()
}

/// A client certificate's subject, given in the notification block's form
/// (BearSSL's, peer.rs), as a log line shows it between `[` and `]`:
/// BearSSL's backslash before a newline dropped, so that [`clean`] writes
/// the newline `\n`, which a backslash and an `n` in a value, written
/// `\\n`, cannot imitate; and a `]`, which would close the subject early
/// and let the rest of a value read as more of the line, escaped `\]`.
pub fn subject(block_form: &str) -> impl fmt::Display + '_ {
    struct Subject<'a>(&'a str);
    impl fmt::Display for Subject<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let mut chars = self.0.chars();
            while let Some(c) = chars.next() {
                match c {
                    // What BearSSL escapes follows; a newline loses it.
                    '\\' => match chars.next() {
                        Some('\n') => f.write_char('\n')?,
                        Some(next) => {
                            f.write_char('\\')?;
                            f.write_char(next)?;
                        }
                        None => f.write_char('\\')?,
                    },
                    ']' => f.write_str("\\]")?,
                    c => f.write_char(c)?,
                }
            }
            Ok(())
        }
    }
    Subject(block_form)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_is_named_by_the_super_servers_pid() {
        assert_eq!(
            name(12806, 12807, Some("127.0.0.1_57336")),
            "pid 12806 engine 12807 127.0.0.1_57336"
        );
        assert_eq!(name(12806, 12807, None), "pid 12806 engine 12807");
        assert_eq!(name(1, 12807, Some("::1_443")), "engine 12807 ::1_443");
    }

    #[test]
    fn clean_escapes_what_could_break_or_disguise_a_line() {
        assert!(matches!(clean("plain é ✓ \\n"), Cow::Borrowed(_)));
        assert_eq!(
            clean("a\nb\rc\td\u{1b}[2K\u{0}\u{7f}"),
            "a\\nb\\rc\\td\\x1b[2K\\x00\\x7f"
        );
        assert_eq!(
            clean("\u{85}\u{9b}\u{2028}\u{2029}\u{202e}\u{2066}\u{200f}"),
            "\\u{85}\\u{9b}\\u{2028}\\u{2029}\\u{202e}\\u{2066}\\u{200f}"
        );
        // What is not a control stays, joiners and all.
        assert_eq!(clean("👩\u{200d}💻 \u{feff}"), "👩\u{200d}💻 \u{feff}");
    }

    #[test]
    fn bytes_keep_every_byte_and_none_raw() {
        assert_eq!(
            bytes(b"h2\n\x1b\xff\"\\'").to_string(),
            "h2\\n\\x1b\\xff\\\"\\\\\\'"
        );
    }

    #[test]
    fn a_subject_newline_and_a_written_backslash_n_read_differently() {
        // CN "a<LF>b" and CN "a\nb", in BearSSL's form.
        let real = clean(&subject("CN=a\\\nb").to_string()).into_owned();
        let written = clean(&subject("CN=a\\\\nb").to_string()).into_owned();
        assert_eq!(real, "CN=a\\nb");
        assert_eq!(written, "CN=a\\\\nb");
        assert_eq!(
            subject("O=x] resumed, CN=\\,").to_string(),
            "O=x\\] resumed, CN=\\,"
        );
        assert_eq!(subject("CN=<invalid>").to_string(), "CN=<invalid>");
    }
}
