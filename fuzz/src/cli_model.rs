//! A reference model of the command line (spec section 2), written from
//! the spec's rules alone, byte by byte as skalibs' gol reads argv. The
//! `cli` target checks `s6_tlsd_io::cli::parse` against it.

use s6_tlsd_io::cli::{ClientCert, Options};

/// What the model expects: the options, or the error message.
pub type Expected = Result<Options, String>;

const PREFIX: &str = "s6-tlsd-io: fatal: ";

fn usage() -> String {
    s6_tlsd_io::error::Error::Usage.to_string()
}

/// skalibs' uint0_scan: unsigned decimal, the whole string, fitting 32 bits.
fn number(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: u64 = 0;
    for &b in s {
        n = n * 10 + u64::from(b - b'0');
        if n > u64::from(u32::MAX) {
            return None;
        }
    }
    Some(n as u32)
}

pub fn parse(args: &[Vec<u8>]) -> Expected {
    let mut o = Options::default();
    let (mut verbosity, mut kimeout, mut sni, mut notif) = (None, None, None, None);
    let mut sni_flag = 0;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i][..];
        if a == b"--" {
            i += 1;
            break;
        }
        if a == b"-" || !a.starts_with(b"-") {
            break;
        }
        if let Some(long) = a.strip_prefix(b"--") {
            let text = String::from_utf8_lossy(long);
            match long.iter().position(|&b| b == b'=') {
                Some(eq) => {
                    let (name, value) = (&long[..eq], long[eq + 1..].to_vec());
                    match name {
                        // gol's own complaint for an empty name.
                        b"" => return Err(format!("{PREFIX}invalid option: --{text}")),
                        b"verbosity" => verbosity = Some(value),
                        b"handshake-timeout" => kimeout = Some(value),
                        b"sni-level" => sni = Some(value),
                        b"notification-fd" => notif = Some(value),
                        _ => {
                            return Err(format!(
                                "{PREFIX}unrecognized option with argument: --{text}"
                            ))
                        }
                    }
                }
                None => match long {
                    b"no-close-notify" => o.close_notify = false,
                    b"close-notify" => o.close_notify = true,
                    b"no-enforce-close-notify" => o.enforce_close_notify = false,
                    b"enforce-close-notify" => o.enforce_close_notify = true,
                    b"client-cert" => o.client_cert = ClientCert::Optional,
                    b"mandatory-client-cert" => o.client_cert = ClientCert::Mandatory,
                    b"sni" => sni_flag = 1,
                    b"mandatory-sni" => sni_flag = 2,
                    b"check" => o.check = true,
                    _ => return Err(format!("{PREFIX}unrecognized boolean option: --{text}")),
                },
            }
            i += 1;
            continue;
        }
        // A cluster of short options.
        let mut j = 1;
        while j < a.len() {
            let slot = match a[j] {
                b's' => {
                    o.close_notify = false;
                    j += 1;
                    continue;
                }
                b'S' => {
                    o.close_notify = true;
                    j += 1;
                    continue;
                }
                b'j' => {
                    o.enforce_close_notify = false;
                    j += 1;
                    continue;
                }
                b'J' => {
                    o.enforce_close_notify = true;
                    j += 1;
                    continue;
                }
                b'Y' => {
                    o.client_cert = ClientCert::Optional;
                    j += 1;
                    continue;
                }
                b'y' => {
                    o.client_cert = ClientCert::Mandatory;
                    j += 1;
                    continue;
                }
                b't' => {
                    o.check = true;
                    j += 1;
                    continue;
                }
                b'v' => &mut verbosity,
                b'K' => &mut kimeout,
                b'k' => &mut sni,
                b'd' => &mut notif,
                _ => {
                    // The message names a character: the rest of the
                    // cluster, decoded, starts with it.
                    let c = String::from_utf8_lossy(&a[j..])
                        .chars()
                        .next()
                        .unwrap_or('?');
                    return Err(format!("{PREFIX}unrecognized short option: {c}"));
                }
            };
            if j + 1 < a.len() {
                *slot = Some(a[j + 1..].to_vec());
            } else if i + 1 < args.len() && args[i + 1] != b"--" {
                i += 1;
                *slot = Some(args[i].clone());
            }
            break;
        }
        i += 1;
    }
    let check = |name: &str, v: Option<Vec<u8>>| -> Result<Option<u32>, String> {
        match v {
            None => Ok(None),
            Some(v) => number(&v)
                .map(Some)
                .ok_or_else(|| format!("{PREFIX}{name} must be an unsigned integer")),
        }
    };
    o.verbosity = check("verbosity", verbosity)?.unwrap_or(1);
    o.handshake_timeout_ms = check("handshake-timeout", kimeout)?.unwrap_or(0);
    o.sni_level = check("sni-level", sni)?.unwrap_or(sni_flag);
    o.notif = check("notification-fd", notif)?.unwrap_or(0);
    // `-t` checks the configuration: no descriptor, operands ignored.
    if o.check {
        return Ok(o);
    }
    let operands = &args[i..];
    if operands.len() < 2 {
        return Err(usage());
    }
    o.fdr = number(&operands[0]).ok_or_else(usage)?;
    o.fdw = number(&operands[1]).ok_or_else(usage)?;
    Ok(o)
}

/// The fuzz input as argv: NUL-separated arguments.
pub fn argv(data: &[u8]) -> Vec<Vec<u8>> {
    if data.is_empty() {
        return Vec::new();
    }
    data.split(|&b| b == 0).map(<[u8]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    fn both(args: &[&str]) -> (Expected, Result<Options, String>) {
        let bytes: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        let real = s6_tlsd_io::cli::parse(bytes.iter().cloned().map(OsString::from_vec))
            .map_err(|e| e.to_string());
        (parse(&bytes), real)
    }

    #[test]
    fn model_agrees_on_the_spec_examples() {
        for args in [
            &[
                "-v",
                "2",
                "-d",
                "7",
                "-S",
                "-J",
                "-y",
                "-K",
                "3000",
                "--mandatory-sni",
                "--",
                "3",
                "6",
            ][..],
            &["-SJy", "-sY", "-v2", "3", "4"],
            &["-k", "0", "--mandatory-sni", "3", "4"],
            &["3", "4", "-S", "--foo", "x"],
            &["-v", "--", "3", "4"],
            &["-x", "3", "4"],
            &["--foo", "3", "4"],
            &["--foo=bar", "3", "4"],
            &["-v=2", "3", "4"],
            &["-K", "12345678901", "3", "4"],
            &["3"],
            &["-", "3", "4"],
            &["-t"],
            &["-St", "x"],
            &["--check", "-k", "y"],
            &["-t", "--", "3", "4"],
        ] {
            let (model, real) = both(args);
            assert_eq!(model, real, "{args:?}");
        }
    }
}
