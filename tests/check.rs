//! The check mode (`-t`): the configuration read as a connection would
//! read it and reported one line per item, every problem found, the exit
//! code that of the first error. No descriptor is given: the binary runs
//! with fds 3 to 9 closed and no operands.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

fn var(name: &str, value: impl AsRef<Path>) -> (String, String) {
    (name.into(), value.as_ref().display().to_string())
}

/// `env` with `name` set to `value` in place of what it was (last).
fn replaced(
    mut env: Vec<(String, String)>,
    name: &str,
    value: impl AsRef<Path>,
) -> Vec<(String, String)> {
    env.retain(|(k, _)| k != name);
    env.push(var(name, value));
    env
}

/// A self-signed pair for `names`, valid from `not_before` to `not_after`.
fn dated(dir: &Path, tag: &str, names: &[&str], years: (i32, i32)) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    params.not_before = rcgen::date_time_ymd(years.0, 1, 1);
    params.not_after = rcgen::date_time_ymd(years.1, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (
        dir.join(format!("{tag}.pem")),
        dir.join(format!("{tag}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c.display().to_string(), k.display().to_string())
}

/// A pair that expires in `days` days, made by openssl (rcgen needs a date).
fn expiring(dir: &Path, tag: &str, days: u32) -> (String, String) {
    let (c, k) = (
        dir.join(format!("{tag}.pem")),
        dir.join(format!("{tag}.key")),
    );
    let out = Command::new("openssl")
        .args(["req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-384", "-subj", "/CN=soon.example"])
        .args(["-addext", "subjectAltName=DNS:soon.example"])
        .arg("-days")
        .arg(days.to_string())
        .arg("-keyout")
        .arg(&k)
        .arg("-out")
        .arg(&c)
        .output()
        .expect("openssl req");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (c.display().to_string(), k.display().to_string())
}

/// A CRL signed by the test CA, its next update on January 1st of `year`.
fn crl(dir: &Path, year: i32) -> String {
    let ca = ca();
    let params = rcgen::CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2019, 1, 1),
        next_update: rcgen::date_time_ymd(year, 1, 1),
        crl_number: rcgen::SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(&ca.cert, &ca.key).unwrap();
    let path = dir.join(format!("crl-{year}.pem"));
    std::fs::write(&path, crl.pem().unwrap()).unwrap();
    path.display().to_string()
}

/// A ticket key file of `len` bytes (32 bytes a key), of `mode`.
fn ticket_file(dir: &Path, mode: u32, len: usize) -> String {
    let path = dir.join(format!("tickets-{mode:o}"));
    std::fs::write(&path, vec![7u8; len]).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.display().to_string()
}

#[test]
fn a_good_configuration_is_reported_line_by_line_and_exits_0() {
    let dir = tmpdir("check-good");
    let named = keys(Alg::Ed25519, &["a.example"]);
    let mut env = key_env(default_keys());
    env.extend([
        var("CERTFILE:a.example", &named.cert),
        var("KEYFILE:a.example", &named.key),
        var("TLS_ALPN", "h2,http/1.1"),
        var("TLS_ALPN:a.example", "imap"),
        var("TLS_TICKET_KEYFILE", ticket_file(&dir, 0o600, 64)),
        var("CAFILE", &ca().pem_path),
        var("CRLFILE", crl(&dir, 2099)),
    ]);
    let (code, out, err) = check(&["-k", "1", "-Y"], &env);
    assert_eq!((code, err.as_str()), (Some(0), ""), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 7, "{out}");
    assert!(
        lines.iter().all(|l| l.starts_with("s6-tlsd-io: info: ")),
        "{out}"
    );
    let default = format!(
        "s6-tlsd-io: info: CERTFILE {} KEYFILE {}: subject CN=s6-tlsd-io test server; \
names localhost; ECDSA P-256; chain of 2 certificates; expires ",
        default_keys().cert.display(),
        default_keys().key.display()
    );
    assert!(lines[0].starts_with(&default), "{}\n{default}", lines[0]);
    assert!(lines[0].ends_with(" days left)"), "{}", lines[0]);
    assert!(
        lines[1].contains("KEYFILE:a.example ") && lines[1].contains("; Ed25519; chain of 2"),
        "{}",
        lines[1]
    );
    assert!(lines[2].ends_with(" TLS_ALPN: h2,http/1.1"), "{out}");
    assert!(lines[3].ends_with(" TLS_ALPN:a.example: imap"), "{out}");
    // Written a moment ago: seconds.
    assert!(lines[4].contains(": 2 keys, modified "), "{out}");
    assert!(
        lines[4].ends_with(" seconds ago") || lines[4].ends_with(" 1 second ago"),
        "{out}"
    );
    assert!(lines[5].ends_with(": trust anchors: 1"), "{out}");
    assert!(
        lines[6].contains(": next update 2099-01-01T00:00:00Z ("),
        "{out}"
    );
    // Without -Y/-y, nor -k: the default pair alone, as a connection reads
    // it; warnings do not change the exit code.
    let (code, out, err) = check(&[], &env);
    assert_eq!(
        (code, err.as_str()),
        (
            Some(0),
            "s6-tlsd-io: warning: KEYFILE:a.example unused without -k: \
only KEYFILE and CERTFILE are read\n\
s6-tlsd-io: warning: TLS_ALPN:a.example: no KEYFILE:a.example pair at this -k: \
the list is never used\n"
        )
    );
    assert_eq!(out.lines().count(), 3, "{out}");
    // Operands are ignored, and no descriptor is needed.
    let (code, _, err) = check(&["-k1", "7", "8"], &env);
    assert_eq!((code, err.as_str()), (Some(0), ""));
}

#[test]
fn every_problem_is_reported_and_the_first_errors_code_is_the_exit_code() {
    let dir = tmpdir("check-bad");
    let (old_cert, old_key) = dated(&dir, "old", &["old.example"], (2019, 2020));
    let (soon_cert, soon_key) = expiring(&dir, "soon", 5);
    let (other_cert, other_key) = dated(&dir, "other", &["other.example"], (2020, 2090));
    let mismatched = keys(Alg::EcdsaP256, &["b.example"]);
    let env = vec![
        var("CERTFILE", &old_cert),
        var("KEYFILE", &old_key),
        var("CERTFILE:b.example", &mismatched.cert),
        var("KEYFILE:b.example", &default_keys().key),
        var("KEYFILE:c.example", &default_keys().key),
        var("CERTFILE:soon.example", &soon_cert),
        var("KEYFILE:soon.example", &soon_key),
        var("CERTFILE:d.example", &other_cert),
        var("KEYFILE:d.example", &other_key),
        var("TLS_ALPN", "h2, http/1.1"),
        var("TLS_ALPN:zzz.example", "imap"),
        var("TLS_TICKET_KEYFILE", ticket_file(&dir, 0o644, 64)),
        var("CAFILE", &ca().pem_path),
        var("CRLFILE", crl(&dir, 2020)),
    ];
    let (code, out, err) = check(&["-k1", "-y"], &env);
    // The first error, the expired default pair, is a configuration error.
    assert_eq!(code, Some(96), "{out}{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.contains(": error: ")).collect();
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains(": warning: ")).collect();
    assert_eq!(errors.len() + warnings.len(), err.lines().count(), "{err}");
    let expected_errors = [
        "expired on 2020-01-01T00:00:00Z (",
        "does not match the certificate in CERTFILE:b.example file",
        "environment variable KEYFILE:c.example not paired with the corresponding CERTFILE",
        "invalid $TLS_ALPN: the protocol name \" http/1.1\" has blanks around it",
        "readable or writable by group or others (mode 644; make it 600)",
        "stale: its next update was due 2020-01-01T00:00:00Z (",
    ];
    assert_eq!(errors.len(), expected_errors.len(), "{err}");
    for (line, want) in errors.iter().zip(expected_errors) {
        assert!(line.starts_with("s6-tlsd-io: error: "), "{line}");
        assert!(line.contains(want), "{line:?} lacks {want:?}");
    }
    assert_eq!(warnings.len(), 3, "{err}");
    // In the environment's order: d.example, then soon.example.
    assert!(
        warnings[0].contains("the certificate does not name d.example"),
        "{err}"
    );
    assert!(warnings[1].contains("KEYFILE:soon.example"), "{err}");
    assert!(
        warnings[1].contains(" (4 days left)") || warnings[1].contains(" (5 days left)"),
        "{err}"
    );
    assert!(
        warnings[2].ends_with(
            "warning: TLS_ALPN:zzz.example: no KEYFILE:zzz.example pair at this -k: \
the list is never used"
        ),
        "{err}"
    );
    // What is fine is still reported: the pair of d.example, the anchors.
    assert!(out.contains("KEYFILE:d.example "), "{out}");
    assert!(out.contains(": trust anchors: 1"), "{out}");
}

#[test]
fn exit_codes_are_those_a_connection_would_have() {
    // A usage error first (CERTFILE unset): 100, and the rest still checked.
    let dir = tmpdir("check-codes");
    let env = [var("TLS_TICKET_KEYFILE", dir.join("missing"))];
    let (code, out, err) = check(&[], &env);
    assert_eq!((code, out.as_str()), (Some(100), ""));
    assert_eq!(
        err,
        format!(
            "s6-tlsd-io: error: CERTFILE not set\n\
s6-tlsd-io: error: unable to read TLS_TICKET_KEYFILE file {}: No such file or directory\n",
            dir.join("missing").display()
        )
    );
    // -k 2 and no named pair.
    let (code, _, err) = check(&["-k", "2"], &key_env(default_keys()));
    assert_eq!(code, Some(96));
    assert_eq!(
        err,
        "s6-tlsd-io: error: no suitable keypairs found in the environment\n"
    );
    // -y without anchors: the usage error a connection would get.
    let (code, _, err) = check(&["-y"], &key_env(default_keys()));
    assert_eq!(code, Some(100));
    assert_eq!(err, "s6-tlsd-io: error: CADIR or CAFILE not set\n");
    // A certificate that is not valid yet.
    let (cert, key) = dated(&dir, "future", &["f.example"], (2090, 2091));
    let (code, _, err) = check(&[], &[var("CERTFILE", cert), var("KEYFILE", key)]);
    assert_eq!(code, Some(96));
    assert!(
        err.contains("; not valid before 2090-01-01T00:00:00Z"),
        "{err}"
    );
    // Bad options are the command line's, as for a connection.
    let (code, _, err) = check(&["-k", "x"], &[]);
    assert_eq!(code, Some(100));
    assert_eq!(
        err,
        "s6-tlsd-io: fatal: sni-level must be an unsigned integer\n"
    );
}

/// A CADIR holding the test CA, and `mode` on the directory itself.
fn cadir(mode: u32) -> std::path::PathBuf {
    let dir = tmpdir("check-cadir").join("clients");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("0123abcd.0"), ca().cert.pem()).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
    dir
}

#[test]
fn trust_anchors_are_read_as_tls_uid_as_a_connection_reads_them() {
    if !running_as_root("the privilege drop of -t is not tested") {
        return;
    }
    // Keys only root can read (read before the drop), a CADIR only root
    // can read (read after it): every -y connection dies of the CADIR.
    let k = keys(Alg::EcdsaP256, &["localhost"]);
    std::fs::set_permissions(&k.key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let dir = cadir(0o700);
    let mut env = key_env(&k);
    env.extend([
        var("CADIR", &dir),
        var("TLS_UID", "65534"),
        var("TLS_GID", "65534"),
    ]);
    let message = format!(
        "unable to read CADIR directory {}: Permission denied",
        dir.display()
    );
    let connection = startup_failure(&["-y"], env.clone());
    assert_eq!(connection, (Some(96), fatal(&message)));
    let (code, out, err) = check(&["-y"], &env);
    assert_eq!(
        (code, err),
        (Some(96), format!("s6-tlsd-io: error: {message}\n")),
        "{out}"
    );
    // The key pair was still read, as root.
    assert!(
        out.contains(&format!("KEYFILE {}: ", k.key.display())),
        "{out}"
    );
    // Readable by all, the same CADIR passes, as the connection does.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, out, err) = check(&["-y"], &env);
    assert_eq!((code, err.as_str()), (Some(0), ""), "{out}");
    assert!(out.contains(": trust anchors: 1\n"), "{out}");
    // An id that cannot be taken: the connection's error, and a warning
    // that what it would read next is not checked.
    let env = replaced(env, "TLS_UID", "nobody");
    let (code, _, err) = check(&["-y"], &env);
    assert_eq!(code, Some(100), "{err}");
    assert_eq!(
        err,
        "s6-tlsd-io: error: invalid $TLS_UID\n\
s6-tlsd-io: warning: trust anchors and CRLs not checked: they are read as TLS_UID/TLS_GID\n"
    );
}

#[test]
fn named_pairs_without_k_are_said_to_be_unused() {
    let named = keys(Alg::Ed25519, &["a.example", "b.example", "c.example"]);
    let mut env = key_env(default_keys());
    for name in ["a.example", "b.example", "c.example"] {
        env.extend([
            var(&format!("CERTFILE:{name}"), &named.cert),
            var(&format!("KEYFILE:{name}"), &named.key),
        ]);
    }
    let (code, out, err) = check(&[], &env);
    assert_eq!(
        (code, err.as_str()),
        (
            Some(0),
            "s6-tlsd-io: warning: KEYFILE:a.example and 2 more KEYFILE:name variables \
unused without -k: only KEYFILE and CERTFILE are read\n"
        ),
        "{out}"
    );
    // Read with -k 1: no warning.
    let (code, _, err) = check(&["-k", "1"], &env);
    assert_eq!((code, err.as_str()), (Some(0), ""));
}

/// `-t` with `env`, then a connection with the same: both fail at once
/// with exit 96 and the same message, `-t` as an `error:` line.
fn check_and_connection_fail_alike(args: &[&str], env: &[(String, String)], message: &str) {
    let (code, _, err) = check(args, env);
    assert_eq!(
        (code, err.lines().next()),
        (
            Some(96),
            Some(format!("s6-tlsd-io: error: {message}").as_str())
        ),
        "{err}"
    );
    let connection = startup_failure(args, env.to_vec());
    assert_eq!(connection, (Some(96), fatal(message)));
}

#[test]
fn a_fifo_or_dev_zero_stops_neither_a_check_nor_a_connection() {
    let dir = tmpdir("check-fifo");
    let fifo = dir.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let k = default_keys();
    // A FIFO with no writer reads as empty (upstream's open_readb), not
    // as an open that waits for ever.
    for var_name in ["CERTFILE", "KEYFILE"] {
        let env = replaced(key_env(k), var_name, &fifo);
        check_and_connection_fail_alike(
            &[],
            &env,
            &format!(
                "invalid {var_name} file {}: the file is empty",
                fifo.display()
            ),
        );
    }
    // /dev/zero never ends: read up to the bound, then refused.
    let env = replaced(key_env(k), "CERTFILE", "/dev/zero");
    check_and_connection_fail_alike(
        &[],
        &env,
        "invalid CERTFILE file /dev/zero: larger than 64 MiB: not a key, certificate or CRL file",
    );
    let mut env = key_env(k);
    env.extend([var("CAFILE", &ca().pem_path), var("CRLFILE", "/dev/zero")]);
    check_and_connection_fail_alike(
        &["-Y"],
        &env,
        "invalid CRLFILE file /dev/zero: larger than 64 MiB: not a key, certificate or CRL file",
    );
    // The ticket key file is refused as not a regular file.
    let mut env = key_env(k);
    env.push(var("TLS_TICKET_KEYFILE", &fifo));
    check_and_connection_fail_alike(
        &[],
        &env,
        &format!(
            "invalid TLS_TICKET_KEYFILE file {}: not a regular file",
            fifo.display()
        ),
    );
    // In a CADIR, a FIFO and /dev/zero are skipped like any unreadable
    // entry: the CA beside them is found.
    let dir = cadir(0o755);
    nix::unistd::mkfifo(
        &dir.join("00000000.0"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("00000001.0")).unwrap();
    let mut env = key_env(k);
    env.push(var("CADIR", &dir));
    let (code, out, err) = check(&["-y"], &env);
    assert_eq!((code, err.as_str()), (Some(0), ""), "{out}");
    assert!(out.contains(": trust anchors: 1\n"), "{out}");
}

#[test]
fn times_are_said_in_the_unit_that_fits() {
    let dir = tmpdir("check-wording");
    // A CRL stale for a few seconds: seconds, not "1 days ago".
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let ca = ca();
    let params = rcgen::CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2019, 1, 1),
        next_update: rcgen::date_time_ymd(1970, 1, 1) + (now - Duration::from_secs(4)),
        crl_number: rcgen::SerialNumber::from(2u64),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(&ca.cert, &ca.key).unwrap();
    let crl_path = dir.join("stale.pem");
    std::fs::write(&crl_path, crl.pem().unwrap()).unwrap();
    let mut env = key_env(default_keys());
    env.extend([
        var("CAFILE", &ca.pem_path),
        var("CRLFILE", &crl_path),
        var("TLS_TICKET_KEYFILE", ticket_file(&dir, 0o600, 32)),
    ]);
    let (code, out, err) = check(&["-Y"], &env);
    assert_eq!(code, Some(96), "{err}");
    let stale = err
        .split_once(" (")
        .and_then(|(_, rest)| rest.split_once(" ago);"))
        .map(|(span, _)| span)
        .unwrap_or_default();
    let seconds = stale
        .strip_suffix(" seconds")
        .and_then(|n| n.parse::<u64>().ok());
    assert!(
        seconds.is_some_and(|n| (4..60).contains(&n)),
        "a CRL stale for a few seconds reads {stale:?}: {err}"
    );
    // One key, not "1 keys".
    assert!(out.contains(": 1 key, modified "), "{out}");
}
