//! argv to `Options`, following skalibs' `gol` rules exactly (spec section 2):
//! options stop at the first operand, a lone `-` or right after `--`; short
//! flags cluster; a short option with a value takes the rest of its cluster or
//! else the next argument unless that is `--`; long options with a value are
//! `--name=value` only; operands after `fdr fdw` are ignored.

use std::ffi::OsString;

use lexopt::Arg::{Long, Short, Value};

use crate::error::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub verbosity: u32,
    /// `-S`: send close_notify on local EOF instead of a bare FIN.
    pub close_notify: bool,
    /// `-J`: peer EOF without close_notify after the handshake is fatal.
    pub enforce_close_notify: bool,
    pub client_cert: ClientCert,
    /// Milliseconds; 0 means no handshake timeout.
    pub handshake_timeout_ms: u32,
    /// 0: default pair only; 1: also `KEYFILE:x`; >= 2: only `KEYFILE:x`.
    pub sni_level: u32,
    /// 0 means no notification, as upstream.
    pub notif: u32,
    pub fdr: u32,
    pub fdw: u32,
    /// `-t`: check the configuration and report, serve no connection; fdr
    /// and fdw are then not needed (check.rs).
    pub check: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCert {
    None,
    Optional,
    Mandatory,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            verbosity: 1,
            close_notify: false,
            enforce_close_notify: false,
            client_cert: ClientCert::None,
            handshake_timeout_ms: 0,
            sni_level: 0,
            notif: 0,
            fdr: 0,
            fdw: 0,
            check: false,
        }
    }
}

/// The option values as written, checked as numbers only once all options
/// are read: that is upstream's order of complaints.
#[derive(Default)]
struct Raw {
    verbosity: Option<OsString>,
    kimeout: Option<OsString>,
    sni_level: Option<OsString>,
    notif: Option<OsString>,
    /// Set by `--sni` (1) and `--mandatory-sni` (2); any `-k` overrides it.
    sni_flag: u32,
}

/// Parses the arguments after the program name.
pub fn parse<I>(args: I) -> Result<Options, Error>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let mut opts = Options::default();
    let mut raw = Raw::default();
    let mut parser = lexopt::Parser::from_args(args);
    // gol reads `-v=2` as the value "=2"; lexopt would strip the '='.
    parser.set_short_equals(false);

    let mut operands: Vec<OsString> = Vec::new();
    loop {
        let arg = match parser.next() {
            Ok(Some(arg)) => arg,
            Ok(None) => break,
            Err(e) => return Err(Error::BadUsage(e.to_string())),
        };
        match arg {
            Short(c) => match c {
                's' => opts.close_notify = false,
                'S' => opts.close_notify = true,
                'j' => opts.enforce_close_notify = false,
                'J' => opts.enforce_close_notify = true,
                'Y' => opts.client_cert = ClientCert::Optional,
                'y' => opts.client_cert = ClientCert::Mandatory,
                't' => opts.check = true,
                'v' => set_short_value(&mut parser, &mut raw.verbosity),
                'K' => set_short_value(&mut parser, &mut raw.kimeout),
                'k' => set_short_value(&mut parser, &mut raw.sni_level),
                'd' => set_short_value(&mut parser, &mut raw.notif),
                other => {
                    return Err(Error::BadUsage(format!(
                        "unrecognized short option: {other}"
                    )))
                }
            },
            Long(name) => {
                let name = name.to_string();
                match parser.optional_value() {
                    Some(value) => set_long_value(&mut raw, &name, value)?,
                    None => set_long_flag(&mut opts, &mut raw, &name)?,
                }
            }
            Value(first) => {
                // The first operand ends the options; the rest is taken raw.
                operands.push(first);
                if let Ok(mut rest) = parser.raw_args() {
                    operands.extend(rest.next());
                }
                break;
            }
        }
    }

    opts.verbosity = number("verbosity", raw.verbosity)?.unwrap_or(1);
    opts.handshake_timeout_ms = number("handshake-timeout", raw.kimeout)?.unwrap_or(0);
    opts.sni_level = number("sni-level", raw.sni_level)?.unwrap_or(raw.sni_flag);
    opts.notif = number("notification-fd", raw.notif)?.unwrap_or(0);

    if opts.check {
        // Nothing will be relayed: any operands are ignored.
        return Ok(opts);
    }
    let [fdr, fdw] = match <[OsString; 2]>::try_from(operands) {
        Ok(pair) => pair,
        Err(_) => return Err(Error::Usage),
    };
    opts.fdr = scan_u32(&fdr).ok_or(Error::Usage)?;
    opts.fdw = scan_u32(&fdw).ok_or(Error::Usage)?;
    Ok(opts)
}

/// `-v2` takes "2"; `-v 2` takes the next argument unless it is `--`, in
/// which case, as in gol, the option is silently left unset.
fn set_short_value(parser: &mut lexopt::Parser, slot: &mut Option<OsString>) {
    if let Some(v) = parser.optional_value() {
        *slot = Some(v);
    } else if let Ok(mut raw) = parser.raw_args() {
        if let Some(v) = raw.next_if(|a| a != "--") {
            *slot = Some(v);
        }
    }
}

fn set_long_value(raw: &mut Raw, name: &str, value: OsString) -> Result<(), Error> {
    let slot = match name {
        "verbosity" => &mut raw.verbosity,
        "handshake-timeout" => &mut raw.kimeout,
        "sni-level" => &mut raw.sni_level,
        "notification-fd" => &mut raw.notif,
        "" => {
            return Err(Error::BadUsage(format!(
                "invalid option: --={}",
                value.to_string_lossy()
            )))
        }
        _ => {
            return Err(Error::BadUsage(format!(
                "unrecognized option with argument: --{name}={}",
                value.to_string_lossy()
            )))
        }
    };
    *slot = Some(value);
    Ok(())
}

fn set_long_flag(opts: &mut Options, raw: &mut Raw, name: &str) -> Result<(), Error> {
    match name {
        "no-close-notify" => opts.close_notify = false,
        "close-notify" => opts.close_notify = true,
        "no-enforce-close-notify" => opts.enforce_close_notify = false,
        "enforce-close-notify" => opts.enforce_close_notify = true,
        "client-cert" => opts.client_cert = ClientCert::Optional,
        "mandatory-client-cert" => opts.client_cert = ClientCert::Mandatory,
        "sni" => raw.sni_flag = 1,
        "mandatory-sni" => raw.sni_flag = 2,
        "check" => opts.check = true,
        _ => {
            return Err(Error::BadUsage(format!(
                "unrecognized boolean option: --{name}"
            )))
        }
    }
    Ok(())
}

fn number(name: &str, value: Option<OsString>) -> Result<Option<u32>, Error> {
    match value {
        None => Ok(None),
        Some(v) => scan_u32(&v)
            .map(Some)
            .ok_or_else(|| Error::BadUsage(format!("{name} must be an unsigned integer"))),
    }
}

/// skalibs' uint0_scan: unsigned decimal, the whole string, fitting 32 bits.
pub fn scan_u32(s: &std::ffi::OsStr) -> Option<u32> {
    let bytes = s.as_encoded_bytes();
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(args: &[&str]) -> Options {
        parse(args.iter().copied()).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn err(args: &[&str]) -> String {
        match parse(args.iter().copied()) {
            Ok(o) => panic!("{args:?} parsed as {o:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn s6_tlsd_argv_parses() {
        let o = ok(&[
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
        ]);
        assert_eq!(
            o,
            Options {
                verbosity: 2,
                close_notify: true,
                enforce_close_notify: true,
                client_cert: ClientCert::Mandatory,
                handshake_timeout_ms: 3000,
                sni_level: 2,
                notif: 7,
                fdr: 3,
                fdw: 6,
                check: false,
            }
        );
    }

    #[test]
    fn clusters_and_last_wins() {
        let o = ok(&["-SJy", "-sY", "-v2", "3", "4"]);
        assert!(!o.close_notify && o.enforce_close_notify);
        assert_eq!(o.client_cert, ClientCert::Optional);
        assert_eq!(o.verbosity, 2);
        assert_eq!(ok(&["-Yy", "3", "4"]).client_cert, ClientCert::Mandatory);
        // a value option takes the rest of its cluster
        assert_eq!(ok(&["-Sd7", "3", "4"]).notif, 7);
    }

    #[test]
    fn k_overrides_sni_flags_in_any_order() {
        assert_eq!(ok(&["-k", "0", "--mandatory-sni", "3", "4"]).sni_level, 0);
        assert_eq!(ok(&["--sni", "-k3", "3", "4"]).sni_level, 3);
        assert_eq!(ok(&["--mandatory-sni", "--sni", "3", "4"]).sni_level, 1);
        assert_eq!(ok(&["--sni-level=2", "3", "4"]).sni_level, 2);
    }

    #[test]
    fn options_stop_at_first_operand_and_extra_operands_are_ignored() {
        let o = ok(&["3", "4", "-S", "--foo", "x"]);
        assert!(!o.close_notify);
        assert_eq!((o.fdr, o.fdw), (3, 4));
        assert_eq!(err(&["-", "3", "4"]), Error::Usage.to_string());
        assert_eq!(ok(&["-S", "--", "3", "4"]).fdr, 3);
        assert_eq!(err(&["--", "-5", "4"]), Error::Usage.to_string());
    }

    #[test]
    fn value_before_double_dash_is_left_unset() {
        let o = ok(&["-v", "--", "3", "4"]);
        assert_eq!(o.verbosity, 1);
        assert_eq!((o.fdr, o.fdw), (3, 4));
        // a trailing value option with nothing after it is also unset
        assert_eq!(err(&["-v"]), Error::Usage.to_string());
    }

    #[test]
    fn errors_match_upstream() {
        assert_eq!(
            err(&["-x", "3", "4"]),
            "s6-tlsd-io: fatal: unrecognized short option: x"
        );
        assert_eq!(
            err(&["--foo", "3", "4"]),
            "s6-tlsd-io: fatal: unrecognized boolean option: --foo"
        );
        assert_eq!(
            err(&["--foo=bar", "3", "4"]),
            "s6-tlsd-io: fatal: unrecognized option with argument: --foo=bar"
        );
        assert_eq!(
            err(&["--verbosity", "3", "4"]),
            "s6-tlsd-io: fatal: unrecognized boolean option: --verbosity"
        );
        assert_eq!(
            err(&["--sni=1", "3", "4"]),
            "s6-tlsd-io: fatal: unrecognized option with argument: --sni=1"
        );
        assert_eq!(
            err(&["-v", "x", "3", "4"]),
            "s6-tlsd-io: fatal: verbosity must be an unsigned integer"
        );
        assert_eq!(
            err(&["-v=2", "3", "4"]),
            "s6-tlsd-io: fatal: verbosity must be an unsigned integer"
        );
        assert_eq!(
            err(&["-K", "12345678901", "3", "4"]),
            "s6-tlsd-io: fatal: handshake-timeout must be an unsigned integer"
        );
        assert_eq!(
            err(&["-k-1", "3", "4"]),
            "s6-tlsd-io: fatal: sni-level must be an unsigned integer"
        );
        assert_eq!(
            err(&["--notification-fd=", "3", "4"]),
            "s6-tlsd-io: fatal: notification-fd must be an unsigned integer"
        );
        assert_eq!(err(&["3"]), Error::Usage.to_string());
        assert_eq!(err(&["3", "x"]), Error::Usage.to_string());
        assert_eq!(err(&["3", "+4"]), Error::Usage.to_string());
    }

    #[test]
    fn check_mode_needs_no_descriptors() {
        let o = ok(&["-t", "-k1", "-y"]);
        assert!(o.check && o.sni_level == 1 && o.client_cert == ClientCert::Mandatory);
        assert!(ok(&["--check", "3", "4"]).check);
        assert!(ok(&["-St"]).check);
        // the options are checked as for a connection
        assert_eq!(
            err(&["-t", "-v", "x"]),
            "s6-tlsd-io: fatal: verbosity must be an unsigned integer"
        );
    }

    #[test]
    fn numbers_fit_32_bits() {
        assert_eq!(scan_u32("4294967295".as_ref()), Some(u32::MAX));
        assert_eq!(scan_u32("4294967296".as_ref()), None);
        assert_eq!(scan_u32("007".as_ref()), Some(7));
        assert_eq!(scan_u32("".as_ref()), None);
        assert_eq!(scan_u32(" 7".as_ref()), None);
    }
}
