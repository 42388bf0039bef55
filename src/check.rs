//! The check mode (`-t`): the configuration read from the environment and
//! the options exactly as a connection would read it, then reported item
//! by item, so that an operator learns of an expired certificate or a
//! stale CRL before a client does (`s6-envdir ./env s6-tlsd-io -t &&
//! s6-svc -r .`). No descriptor, sandbox or network.
//!
//! Each file is read as the connection reads it, as the same ids: the key
//! pairs and the ticket key file first (as root, when root runs it), then,
//! as a connection does (main.rs), the drop to TLS_UID/TLS_GID (for real:
//! `-t` is a process of its own), then the trust anchors and the CRLs. A
//! CADIR that only root can read thus fails here as it fails every
//! client-certificate connection, with the same message and exit code.
//!
//! One line per item: what is fine on stdout (`info:`), what is wrong on
//! stderr (`warning:`, `error:`), so that `>/dev/null` leaves only the
//! problems. Every problem is reported, not just the first; the exit code
//! is 0, or that of the first error: the code a connection would exit with
//! for it, 96 for what only this mode sees (an expired certificate, a
//! stale CRL). Warnings (a certificate expiring within 14 days, a key pair
//! whose certificate does not name it) do not change the exit code.

use std::fmt;
use std::io::Write;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use der::DateTime;
use rustls::sign::CertifiedKey;
use rustls::{SignatureAlgorithm, SignatureScheme};

use crate::asn1::{dns_names, next_update, validity};
use crate::cli::{ClientCert, Options};
use crate::env::Env;
use crate::error::{Error, PROG};
use crate::keys::{self, KeyPair, Loaded};
use crate::log::Log;
use crate::source::Source;
use crate::ticket::keys::{self as ticket, TicketKeys};
use crate::{alpn, anchors, crl, privilege, tls};

/// Under this many days left, a certificate's expiry is a warning.
const WARN_DAYS: i64 = 14;
const DAY: i64 = 86400;

/// Checks everything and prints the report; the exit code.
pub fn run(opts: &Options, env: &Env) -> i32 {
    let mut report = Report {
        now: unix_now(),
        code: 0,
    };
    let named = key_pairs(&mut report, opts, env);
    for (name, list) in alpn::lists(env) {
        let unused = name
            .as_ref()
            .is_some_and(|n| !named.contains(&n.to_ascii_lowercase()));
        let var = name.map_or(alpn::VAR.to_string(), |n| format!("{}:{n}", alpn::VAR));
        match list {
            // Parsed all the same, as a connection parses it.
            Ok(_) if unused => report.warn(format_args!(
                "{var}: no KEYFILE:{} pair at this -k: the list is never used",
                &var[alpn::VAR.len() + 1..]
            )),
            Ok(list) if list.is_empty() => report.info(format_args!("{var}: empty, no ALPN")),
            Ok(list) => {
                let names: Vec<_> = list.iter().map(|p| String::from_utf8_lossy(p)).collect();
                report.info(format_args!("{var}: {}", names.join(",")));
            }
            Err(e) => report.error(&e),
        }
    }
    tickets(&mut report, env);
    // What a connection reads after the drop is read after it here too.
    if let Err(e) = privilege::drop_privileges(env, &Log::new(opts.verbosity)) {
        // A connection dies here: what it would read next is not known.
        report.error(&e);
        if opts.client_cert != ClientCert::None {
            report.warn(format_args!(
                "trust anchors and CRLs not checked: they are read as TLS_UID/TLS_GID"
            ));
        }
        return report.code;
    }
    if opts.client_cert != ClientCert::None {
        client_certificates(&mut report, opts, env);
    }
    report.code
}

/// The lines, and the exit code of the first error.
struct Report {
    now: i64,
    code: i32,
}

impl Report {
    fn info(&mut self, args: fmt::Arguments) {
        // A report nobody reads is no reason to stop checking.
        let _ = writeln!(std::io::stdout(), "{PROG}: info: {args}");
    }

    fn warn(&mut self, args: fmt::Arguments) {
        let _ = writeln!(std::io::stderr(), "{PROG}: warning: {args}");
    }

    fn error(&mut self, e: &Error) {
        let _ = writeln!(std::io::stderr(), "{}", e.at_level("error"));
        if self.code == 0 {
            self.code = e.exit_code();
        }
    }

    /// A problem that a connection would not see at start-up.
    fn config_error(&mut self, args: fmt::Arguments) {
        self.error(&Error::Config(args.to_string()));
    }
}

/// The default pair (`-k 0` and `-k 1`) and each `KEYFILE:name` (`-k 1`
/// and up), each loaded as the connection that gets it would load it. The
/// names read, lowercase (what `TLS_ALPN:name` is matched with).
fn key_pairs(report: &mut Report, opts: &Options, env: &Env) -> Vec<String> {
    if opts.sni_level <= 1 {
        let shown = |var| {
            env.get(var)
                .map(|p| p.to_string_lossy())
                .unwrap_or_default()
        };
        let what = format!(
            "CERTFILE {} KEYFILE {}",
            shown("CERTFILE"),
            shown("KEYFILE")
        );
        checked_pair(report, &what, None, KeyPair::read_default(env));
    }
    let mut named = Vec::new();
    if opts.sni_level == 0 {
        // A connection ignores them too, but the operator meant something.
        let mut unused = env
            .iter()
            .map(|(var, _)| var.to_string_lossy())
            .filter(|var| keys::pair_name(var).is_some());
        if let Some(first) = unused.next() {
            let more = match unused.count() {
                0 => String::new(),
                n => format!(" and {}", plural(n as u64, "more KEYFILE:name variable")),
            };
            report.warn(format_args!(
                "{first}{more} unused without -k: only KEYFILE and CERTFILE are read"
            ));
        }
        return named;
    }
    for (name, pair) in keys::named_pairs(env) {
        named.push(name.to_ascii_lowercase());
        let shown = |var: &str| {
            let path = env
                .get(var)
                .map(|p| p.to_string_lossy())
                .unwrap_or_default();
            format!("{var} {path}")
        };
        let what = format!(
            "{} {}",
            shown(&format!("CERTFILE:{name}")),
            shown(&format!("KEYFILE:{name}"))
        );
        checked_pair(report, &what, Some(&name), pair);
    }
    if opts.sni_level >= 2 && named.is_empty() {
        report.error(&Error::Config(
            "no suitable keypairs found in the environment".into(),
        ));
    }
    named
}

/// A pair read (or why not), loaded and reported: its key signs, then
/// its certificates' names and dates.
fn checked_pair(report: &mut Report, what: &str, name: Option<&str>, pair: Result<KeyPair, Error>) {
    match pair.and_then(KeyPair::load) {
        Ok(loaded) if signs(report, what, &loaded) => key_pair(report, what, name, &loaded.pair),
        Ok(_) => {}
        Err(e) => report.error(&e),
    }
}

/// One signature, as the first handshake would make: an RSA key is only
/// proved consistent as it signs (rsa.rs), so a key whose CRT numbers are
/// wrong loads, and without this `-t` would pass what every connection
/// then refuses. Reports the key file's error and says whether it signed.
fn signs(report: &mut Report, what: &str, loaded: &Loaded) -> bool {
    const OFFERED: [SignatureScheme; 5] = [
        SignatureScheme::RSA_PSS_SHA256,
        SignatureScheme::ECDSA_NISTP256_SHA256,
        SignatureScheme::ECDSA_NISTP384_SHA384,
        SignatureScheme::ECDSA_NISTP521_SHA512,
        SignatureScheme::ED25519,
    ];
    let signed = match OFFERED.into_iter().find(|&s| loaded.signs_with(s)) {
        // The key file's error, a connection's: an RSA key's (no other key
        // is known to fail here).
        Some(scheme) => loaded.sign(scheme, b"s6-tlsd-io -t").map(|_| ()),
        None => {
            // A report line, like `config_error`'s, not a connection's
            // message.
            let line = format!("{what}: the key cannot sign");
            Err(Error::Config(line))
        }
    };
    signed.inspect_err(|e| report.error(e)).is_ok()
}

/// `what`: subject, names, key type, chain length, expiry.
fn key_pair(report: &mut Report, what: &str, name: Option<&str>, pair: &Arc<CertifiedKey>) {
    let Some(leaf) = pair.cert.first() else {
        return report.config_error(format_args!("{what}: no certificate"));
    };
    let subject = crate::peer::subject(leaf).unwrap_or_else(|| "(empty)".into());
    // Read by asn1.rs, not webpki, which refuses what the engine serves (a
    // version 1 certificate, a critical extension it does not know).
    let names: Vec<String> = dns_names(leaf)
        .unwrap_or_default()
        .into_iter()
        .filter(|n| is_dns_name(n))
        .map(|n| String::from_utf8_lossy(n).to_ascii_lowercase())
        .collect();
    let chain = match pair.cert.len() {
        1 => "1 certificate".to_string(),
        n => format!("chain of {n} certificates"),
    };
    // The chain is only as good as its first certificate to expire.
    let validity: Option<Vec<_>> = pair.cert.iter().map(|c| validity(c)).collect();
    let Some(validity) = validity else {
        // Not DER dates: a connection serves the chain all the same, and
        // its client judges them.
        return report.warn(format_args!(
            "{what}: a certificate's validity cannot be decoded: its dates are not checked"
        ));
    };
    let not_before = validity.iter().map(|v| v.0).max_by_key(unix);
    let Some((i, not_after)) = validity
        .iter()
        .map(|v| v.1)
        .enumerate()
        .min_by_key(|(_, t)| unix(t))
    else {
        return;
    };
    let which = match i {
        0 => String::new(),
        i => format!(" (certificate {} of the chain)", i + 1),
    };
    let line = format!(
        "{what}: subject {subject}; names {}; {}; {chain}",
        match names.is_empty() {
            true => "(none)".to_string(),
            false => names.join(" "),
        },
        key_type(pair),
    );
    let left = unix(&not_after) - report.now;
    if let Some(t) = not_before.filter(|t| unix(t) > report.now) {
        report.config_error(format_args!("{line}; not valid before {t}"));
    } else if left <= 0 {
        report.config_error(format_args!(
            "{line}; expired on {not_after}{which} ({} ago)",
            span(left.unsigned_abs())
        ));
    } else if left < WARN_DAYS * DAY {
        report.warn(format_args!(
            "{line}; expires {not_after}{which} ({} left)",
            span(left.unsigned_abs())
        ));
    } else {
        report.info(format_args!(
            "{line}; expires {not_after}{which} ({} left)",
            span(left.unsigned_abs())
        ));
    }
    if let Some(name) = name.map(str::to_ascii_lowercase) {
        if !names.is_empty() && !names.iter().any(|n| covers(n, &name)) {
            report.warn(format_args!(
                "{what}: the certificate does not name {name}: clients that check it refuse it"
            ));
        }
    }
}

/// Letters, digits, `-`, `.`, `*` and `_`: what a DNS name of a
/// certificate is made of; anything else is not reported (nor printed).
fn is_dns_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-.*_".contains(b))
}

/// Whether a certificate's DNS name covers a pair's name (`KEYFILE:name`,
/// itself perhaps a wildcard): equal, or `*.rest` over `label.rest`.
fn covers(cert_name: &str, name: &str) -> bool {
    cert_name == name
        || cert_name.strip_prefix("*.").is_some_and(|rest| {
            name.split_once('.')
                .is_some_and(|(label, parent)| parent == rest && !label.contains('*'))
        })
}

/// `RSA 2048 bits`, `ECDSA P-256`, `Ed25519`.
fn key_type(pair: &CertifiedKey) -> String {
    match pair.key.algorithm() {
        SignatureAlgorithm::RSA => {
            let bits = pair
                .key
                .public_key()
                .and_then(|spki| aws_lc_rs::rsa::PublicEncryptingKey::from_der(&spki).ok())
                .map(|k| k.key_size_bits());
            match bits {
                Some(bits) => format!("RSA {bits} bits"),
                None => "RSA".into(),
            }
        }
        // An ECDSA key of the provider signs with its own curve's scheme
        // only: the scheme it accepts tells the curve.
        SignatureAlgorithm::ECDSA => [
            (SignatureScheme::ECDSA_NISTP256_SHA256, "P-256"),
            (SignatureScheme::ECDSA_NISTP384_SHA384, "P-384"),
            (SignatureScheme::ECDSA_NISTP521_SHA512, "P-521"),
        ]
        .iter()
        .find(|(scheme, _)| pair.key.choose_scheme(&[*scheme]).is_some())
        .map_or("ECDSA".into(), |(_, curve)| format!("ECDSA {curve}")),
        SignatureAlgorithm::ED25519 => "Ed25519".into(),
        other => format!("{other:?}"),
    }
}

/// The ticket keys: how many, and how old the file is.
fn tickets(report: &mut Report, env: &Env) {
    let Some(path) = env.get(ticket::VAR).filter(|p| !p.is_empty()) else {
        return;
    };
    let shown = path.to_string_lossy();
    if let Err(e) = TicketKeys::load(env) {
        return report.error(&e);
    }
    match std::fs::metadata(path) {
        Ok(meta) => {
            let keys = plural(meta.len() / ticket::KEY_LEN as u64, "key");
            let age = meta
                .modified()
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .map_or("modified in the future".into(), |d| {
                    format!("modified {} ago", span(d.as_secs()))
                });
            report.info(format_args!("{} {shown}: {keys}, {age}", ticket::VAR));
        }
        Err(e) => report.error(&Source::file(ticket::VAR, path).unreadable(&e)),
    }
}

/// A length of time in the largest unit that fits, rounded down: `4
/// seconds`, `1 minute`, `3 hours`, `12 days`.
fn span(secs: u64) -> String {
    match secs {
        s if s < 60 => plural(s, "second"),
        s if s < 3600 => plural(s / 60, "minute"),
        s if s < DAY as u64 => plural(s / 3600, "hour"),
        s => plural(s / DAY as u64, "day"),
    }
}

/// `1 key`, `2 keys`, `0 keys`.
fn plural(n: u64, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    }
}

/// `-y`/`-Y`: the trust anchors, each CRL, and the verifier built of them.
fn client_certificates(report: &mut Report, opts: &Options, env: &Env) {
    let roots = match anchors::read_trust_anchors(env) {
        Ok(roots) => {
            let (var, source) = match env.get("CADIR") {
                Some(dir) => ("CADIR", dir),
                None => ("CAFILE", env.get("CAFILE").unwrap_or_default()),
            };
            report.info(format_args!(
                "{var} {}: trust anchors: {}",
                source.to_string_lossy(),
                roots.len()
            ));
            Ok(roots)
        }
        Err(e) => {
            report.error(&e);
            Err(e.to_string())
        }
    };
    let mut crls = Vec::new();
    let mut crls_ok = true;
    match crl::files(env) {
        Ok(files) => {
            for file in files {
                match crl::read_file(&file) {
                    Ok(found) => {
                        for (i, one) in found.iter().enumerate() {
                            let what = match found.len() {
                                1 => format!("{} {}", file.var, file.shown()),
                                n => {
                                    format!("{} {} (CRL {} of {n})", file.var, file.shown(), i + 1)
                                }
                            };
                            crl_line(report, &what, one);
                        }
                        crls.extend(found);
                    }
                    Err(e) => {
                        crls_ok = false;
                        report.error(&e);
                    }
                }
            }
        }
        Err(e) => {
            crls_ok = false;
            // An unreadable CADIR was reported with the trust anchors.
            if roots.as_ref().err() != Some(&e.to_string()) {
                report.error(&e);
            }
        }
    }
    if let (Ok(roots), true) = (roots, crls_ok) {
        let mandatory = opts.client_cert == ClientCert::Mandatory;
        if let Err(e) = tls::client_verifier(tls::provider(), roots, crls, mandatory) {
            report.error(&e);
        }
    }
}

/// A CRL's next update; past it, the CRL refuses every certificate its
/// issuer signed.
fn crl_line(report: &mut Report, what: &str, crl: &[u8]) {
    let Some(next) = next_update(crl) else {
        return report.config_error(format_args!("{what}: the CRL has no next update"));
    };
    let left = unix(&next) - report.now;
    if left <= 0 {
        report.config_error(format_args!(
            "{what}: stale: its next update was due {next} ({} ago); \
client certificates of its issuer are refused until it is replaced",
            span(left.unsigned_abs())
        ));
    } else {
        report.info(format_args!(
            "{what}: next update {next} ({} left)",
            span(left.unsigned_abs())
        ));
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn unix(t: &DateTime) -> i64 {
    t.unix_duration().as_secs() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(covers("a.example", "a.example"));
        assert!(covers("*.example.org", "www.example.org"));
        assert!(!covers("*.example.org", "example.org"));
        assert!(!covers("*.example.org", "a.b.example.org"));
        assert!(covers("*.example.org", "*.example.org"));
        assert!(!covers("www.example.org", "*.example.org"));
    }

    #[test]
    fn spans_read_as_people_say_them() {
        assert_eq!(span(0), "0 seconds");
        assert_eq!(span(1), "1 second");
        assert_eq!(span(4), "4 seconds");
        assert_eq!(span(60), "1 minute");
        assert_eq!(span(125), "2 minutes");
        assert_eq!(span(3600), "1 hour");
        assert_eq!(span(7300), "2 hours");
        assert_eq!(span(86400 + 5), "1 day");
        assert_eq!(span(3 * 86400 + 5), "3 days");
        assert_eq!(plural(1, "key"), "1 key");
        assert_eq!(plural(2, "key"), "2 keys");
    }
}
