//! Spec section 2: the command line, through the real binary. Errors are
//! checked with their exact exit code and stderr line; accepted command
//! lines are proven accepted by what the engine then does (a handshake, a
//! close_notify, a timeout, a notification block) or by the next check it
//! reaches (e.g. `CERTFILE not set`), which shows that parsing succeeded.

mod common;

use std::ffi::OsString;
use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rustls::ClientConfig;

const USAGE: &str = "s6-tlsd-io: usage: s6-tlsd-io [ -v verbosity ] [ -d notif ] [ -S | -s ] \
[ -J | -j ] [ -Y | -y ] [ -K timeout ] [ -k snilevel ] fdr fdw \
| s6-tlsd-io -t [ -Y | -y ] [ -k snilevel ]\n";

const SHORT: Duration = Duration::from_millis(500);

// ---------------------------------------------------------------- helpers

fn env_of(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The default key pair as CERTFILE/KEYFILE.
fn key_env_default() -> Vec<(String, String)> {
    key_env(default_keys())
}

/// Runs the binary directly with `argv` and only `env`: stdin and stdout on
/// /dev/null, fds 3 to 9 closed, stderr collected. Returns the exit code
/// and stderr; panics if the program is still running after 20 s.
fn run(argv: &[&str], env: &[(String, String)]) -> (Option<i32>, String) {
    code_and_stderr(direct(argv, env), || {
        format!("{argv:?}: still running after 20 s")
    })
}

/// Asserts that `argv` with an empty environment fails with `code` and
/// exactly the line `stderr`.
fn assert_fails(argv: &[&str], code: i32, stderr: &str) {
    assert_eq!(run(argv, &[]), (Some(code), stderr.to_string()), "{argv:?}");
}

/// `argv` parses: with an empty environment the engine goes on to look
/// for its keys and complains that CERTFILE is not set.
fn assert_parses(argv: &[&str]) {
    assert_eq!(
        run(argv, &[]),
        (Some(100), fatal("CERTFILE not set")),
        "{argv:?} should parse"
    );
}

/// An engine on the harness's descriptors (client socket on 0 and 1, fdr 3,
/// fdw 4, notification pipe 5) with exactly `argv` after the program name.
fn raw(argv: &[&str]) -> Spawn {
    Spawn {
        raw_argv: Some(argv.iter().map(OsString::from).collect()),
        ..spawn()
    }
}

/// Starts `spawn`, completes a handshake and an echo, ends cleanly.
fn assert_serves(spawn: Spawn) {
    let mut e = spawn.start();
    let mut tls = connect(&e, tls13(), "localhost");
    echo(&mut e, &mut tls);
    finish(e, tls);
}

/// Whether the engine started with `argv` sends close_notify when the app
/// closes fdr (`-S`) or only a bare FIN (`-s`).
fn sends_close_notify(argv: &[&str]) -> bool {
    let mut e = raw(argv).start();
    let mut tls = connect(&e, tls13(), "localhost");
    echo(&mut e, &mut tls);
    e.close_app_tx();
    let (rest, end) = read_to_end_tls(&mut tls);
    assert!(rest.is_empty(), "unexpected data {rest:?}");
    let sent = match end {
        Ok(()) => true,
        Err(err) if err.kind() == ErrorKind::UnexpectedEof => false,
        Err(err) => panic!("{argv:?}: client read: {err}"),
    };
    drop(tls);
    e.client.take();
    let exit = e.wait_exit();
    assert!(exit.code.is_some(), "{exit:?}");
    sent
}

/// Whether the engine started with `argv` treats a client FIN without
/// close_notify as fatal (`-J`: exit 98) or as a normal end (`-j`).
fn enforces_close_notify(argv: &[&str]) -> bool {
    let mut e = raw(argv).start();
    let mut tls = connect(&e, tls13(), "localhost");
    echo(&mut e, &mut tls);
    half_close(&tls.sock);
    let mut rest = Vec::new();
    e.app_rx().read_to_end(&mut rest).expect("read fdw");
    assert!(rest.is_empty());
    e.close_app_tx();
    let exit = e.wait_exit();
    match exit.code {
        Some(98) => {
            assert_eq!(
                exit.stderr,
                fatal("remote closed connection without a close_notify")
            );
            true
        }
        Some(0) => {
            assert_eq!(exit.stderr, "");
            false
        }
        _ => panic!("{argv:?}: {exit:?}"),
    }
}

/// The stderr of an engine started with `argv` that is never sent a
/// ClientHello: it must time out with exit 98.
fn timeout_stderr(argv: &[&str]) -> String {
    let mut e = raw(argv).start();
    let exit = e.wait_exit();
    assert_eq!(exit.code, Some(98), "{argv:?}: {exit:?}");
    exit.stderr
}

/// The engine started with `argv` does not time out: it is still waiting
/// for the client after a while, then serves it.
fn assert_no_timeout(argv: &[&str]) {
    let mut e = raw(argv).start();
    assert!(
        e.still_running_after(SHORT),
        "{argv:?}: {:?}",
        e.wait_exit()
    );
    let mut tls = connect(&e, tls13(), "localhost");
    echo(&mut e, &mut tls);
    finish(e, tls);
}

/// The snilevel that `argv` (operands `3 4`, no -y/-Y) selects, told from
/// which check the engine reaches with two environments:
/// - empty: levels 0 and 1 need CERTFILE; level 2 and more need none but
///   find no KEYFILE:x;
/// - a good default pair plus an unpaired KEYFILE:x: level 0 ignores
///   KEYFILE:x and goes on to fdr, which is closed; level 1 complains.
fn sni_level(argv: &[&str]) -> u32 {
    match run(argv, &[]) {
        (Some(96), msg) => {
            assert_eq!(msg, fatal("no suitable keypairs found in the environment"));
            return 2;
        }
        (Some(100), msg) => assert_eq!(msg, fatal("CERTFILE not set"), "{argv:?}"),
        other => panic!("{argv:?}: {other:?}"),
    }
    let mut env = key_env_default();
    env.push(("KEYFILE:unpaired.example".into(), "/nonexistent".into()));
    match run(argv, &env) {
        // (The reason is checked by `closed_fdr_exits_111`.)
        (Some(111), msg) if msg.starts_with("s6-tlsd-io: fatal: unable to use fd 3: ") => 0,
        (Some(96), msg) => {
            assert_eq!(
                msg,
                fatal(
                    "environment variable KEYFILE:unpaired.example not paired \
                     with the corresponding CERTFILE"
                )
            );
            1
        }
        other => panic!("{argv:?}: {other:?}"),
    }
}

/// A client certificate signed by the test CA, and a client that sends it.
fn client_with_cert() -> Arc<ClientConfig> {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "cli test client");
    let cert = params.signed_by(&key, &ca().cert, &ca().key).unwrap();
    client_config_with_cert(cert.der(), &key.serialize_der())
}

/// Whether the engine started with `argv` (and CAFILE set) refuses a
/// client that sends no certificate (`-y`) or lets it in (`-Y`).
fn client_cert_mandatory(argv: &[&str]) -> bool {
    let mut e = raw(argv)
        .set("CAFILE", &ca().pem_path.display().to_string())
        .start();
    // Under TLS 1.2 the refusal comes during the client's handshake.
    if let Ok(mut tls) = try_connect(&e, tls12(), "localhost") {
        let _ = tls.write_all(b"x");
        let _ = tls.flush();
        let mut b = [0u8; 1];
        let n = e.app_rx().read(&mut b).expect("read fdw");
        if n == 1 {
            finish(e, tls);
            return false;
        }
    }
    let exit = e.wait_exit();
    assert_eq!(exit.code, Some(98), "{argv:?}: {exit:?}");
    true
}

// ------------------------------------------------- usage and option errors

#[test]
fn missing_operands_print_the_usage_line() {
    assert_fails(&[], 100, USAGE);
    assert_fails(&["3"], 100, USAGE);
    assert_fails(&["-S", "--", "3"], 100, USAGE);
}

#[test]
fn non_numeric_operands_print_the_usage_line() {
    assert_fails(&["x", "4"], 100, USAGE);
    assert_fails(&["3", "x"], 100, USAGE);
    assert_fails(&["3", "+4"], 100, USAGE);
    assert_fails(&["3", "4x"], 100, USAGE);
    assert_fails(&["3", ""], 100, USAGE);
    assert_fails(&["3", "4294967296"], 100, USAGE);
}

#[test]
fn there_is_no_permutation_options_after_the_first_operand_are_operands() {
    // "-S" is taken as fdw.
    assert_fails(&["3", "-S", "4"], 100, USAGE);
    // After "--", "-5" is an operand, not an option.
    assert_fails(&["--", "-5", "4"], 100, USAGE);
}

#[test]
fn a_lone_dash_ends_the_options_and_is_an_operand() {
    assert_fails(&["-", "3", "4"], 100, USAGE);
    assert_fails(&["-S", "-", "3", "4"], 100, USAGE);
}

#[test]
fn unknown_short_option_is_named() {
    assert_fails(
        &["-x", "3", "4"],
        100,
        &fatal("unrecognized short option: x"),
    );
    // Inside a cluster too.
    assert_fails(
        &["-SJx", "3", "4"],
        100,
        &fatal("unrecognized short option: x"),
    );
}

#[test]
fn unknown_long_flag_is_named() {
    assert_fails(
        &["--foo", "3", "4"],
        100,
        &fatal("unrecognized boolean option: --foo"),
    );
}

#[test]
fn unknown_long_option_with_argument_is_named() {
    assert_fails(
        &["--foo=bar", "3", "4"],
        100,
        &fatal("unrecognized option with argument: --foo=bar"),
    );
}

#[test]
fn long_options_take_their_value_only_after_an_equals_sign() {
    // "--verbosity 0" is a boolean option that does not exist.
    assert_fails(
        &["--verbosity", "0", "3", "4"],
        100,
        &fatal("unrecognized boolean option: --verbosity"),
    );
    assert_fails(
        &["--handshake-timeout", "100", "3", "4"],
        100,
        &fatal("unrecognized boolean option: --handshake-timeout"),
    );
    // And a flag does not take a value.
    assert_fails(
        &["--sni=1", "3", "4"],
        100,
        &fatal("unrecognized option with argument: --sni=1"),
    );
    assert_fails(
        &["--close-notify=yes", "3", "4"],
        100,
        &fatal("unrecognized option with argument: --close-notify=yes"),
    );
}

#[test]
fn bad_numbers_name_the_option() {
    for (argv, name) in [
        (&["-v", "x", "3", "4"][..], "verbosity"),
        (&["-vx", "3", "4"], "verbosity"),
        (&["--verbosity=x", "3", "4"], "verbosity"),
        (&["-K", "1s", "3", "4"], "handshake-timeout"),
        (&["--handshake-timeout=", "3", "4"], "handshake-timeout"),
        (&["-k", "two", "3", "4"], "sni-level"),
        (&["--sni-level=-1", "3", "4"], "sni-level"),
        (&["-d", "5x", "3", "4"], "notification-fd"),
        (&["--notification-fd=+5", "3", "4"], "notification-fd"),
    ] {
        assert_fails(
            argv,
            100,
            &fatal(&format!("{name} must be an unsigned integer")),
        );
    }
}

#[test]
fn numbers_must_be_the_whole_string_in_unsigned_decimal() {
    for bad in ["", " 1", "1 ", "+1", "-1", "0x10", "1.5", "1e3"] {
        assert_fails(
            &["-v", bad, "3", "4"],
            100,
            &fatal("verbosity must be an unsigned integer"),
        );
    }
    // `-v=2` gives the value "=2".
    assert_fails(
        &["-v=2", "3", "4"],
        100,
        &fatal("verbosity must be an unsigned integer"),
    );
}

#[test]
fn numbers_must_fit_32_bits_and_an_11_digit_timeout_is_rejected() {
    assert_fails(
        &["-K", "4294967296", "3", "4"],
        100,
        &fatal("handshake-timeout must be an unsigned integer"),
    );
    assert_fails(
        &["-K", "12345678901", "3", "4"],
        100,
        &fatal("handshake-timeout must be an unsigned integer"),
    );
    assert_fails(
        &["--sni-level=99999999999", "3", "4"],
        100,
        &fatal("sni-level must be an unsigned integer"),
    );
    // The largest 32-bit values parse.
    assert_parses(&["-K", "4294967295", "-v4294967295", "3", "4"]);
}

#[test]
fn largest_timeout_is_accepted_and_does_not_expire() {
    assert_no_timeout(&["-K", "4294967295", "--", "3", "4"]);
}

#[test]
fn fdr_or_fdw_0_or_1_is_refused() {
    for argv in [["0", "4"], ["3", "1"], ["1", "4"], ["3", "0"], ["0", "1"]] {
        assert_eq!(
            run(&argv, &key_env_default()),
            (Some(100), fatal("fdr and fdw must not be 0 or 1")),
            "{argv:?}"
        );
    }
}

#[test]
fn closed_fdr_exits_111() {
    assert_eq!(
        run(&["--", "3", "4"], &key_env_default()),
        (Some(111), fatal("unable to use fd 3: Bad file descriptor"))
    );
}

#[test]
fn closed_fdw_exits_111() {
    // The harness opens fds 3, 4 and 5; fd 9 is closed.
    let mut e = raw(&["--", "3", "9"]).start();
    let exit = e.wait_exit();
    assert_eq!(
        (exit.code, exit.stderr),
        (Some(111), fatal("unable to use fd 9: Bad file descriptor"))
    );
}

#[test]
fn closed_fdw_is_reported_even_when_fdr_is_fd_2() {
    // fd 2 is a legal fdr (only 0 and 1 are refused); fd 9 is closed.
    assert_eq!(
        run(&["--", "2", "9"], &key_env_default()),
        (Some(111), fatal("unable to use fd 9: Bad file descriptor"))
    );
}

#[test]
fn closed_notification_fd_exits_111() {
    let mut e = raw(&["-d", "7", "--", "3", "4"]).start();
    let exit = e.wait_exit();
    assert_eq!(
        (exit.code, exit.stderr),
        (Some(111), fatal("unable to use fd 7: Bad file descriptor"))
    );
}

// ---------------------------------------------------------------- accepted

#[test]
fn operands_alone_are_accepted_with_the_defaults() {
    assert_parses(&["3", "4"]);
    // Default: -s, -j, verbosity 1, no timeout, snilevel 0, no notification.
    assert!(!sends_close_notify(&["3", "4"]));
    assert!(!enforces_close_notify(&["3", "4"]));
    assert_eq!(
        timeout_stderr(&["-K", "100", "3", "4"]),
        fatal("handshake timed out")
    );
    assert_no_timeout(&["3", "4"]);
    assert_eq!(sni_level(&["3", "4"]), 0);
}

#[test]
fn double_dash_ends_the_options() {
    assert_parses(&["--", "3", "4"]);
    assert_serves(raw(&["--", "3", "4"]));
}

#[test]
fn every_short_and_long_option_is_accepted() {
    for argv in [
        &["-s", "3", "4"][..],
        &["--no-close-notify", "3", "4"],
        &["-S", "3", "4"],
        &["--close-notify", "3", "4"],
        &["-j", "3", "4"],
        &["--no-enforce-close-notify", "3", "4"],
        &["-J", "3", "4"],
        &["--enforce-close-notify", "3", "4"],
        &["-Y", "3", "4"],
        &["--client-cert", "3", "4"],
        &["-y", "3", "4"],
        &["--mandatory-client-cert", "3", "4"],
        &["--sni", "3", "4"],
        &["-v", "3", "3", "4"],
        &["--verbosity=3", "3", "4"],
        &["-K", "100", "3", "4"],
        &["--handshake-timeout=100", "3", "4"],
        &["-k", "1", "3", "4"],
        &["--sni-level=1", "3", "4"],
        &["-d", "5", "3", "4"],
        &["--notification-fd=5", "3", "4"],
    ] {
        assert_parses(argv);
    }
}

#[test]
fn close_notify_short_and_long_forms() {
    assert!(sends_close_notify(&["-S", "3", "4"]));
    assert!(sends_close_notify(&["--close-notify", "3", "4"]));
    assert!(!sends_close_notify(&["-s", "3", "4"]));
    assert!(!sends_close_notify(&["--no-close-notify", "3", "4"]));
}

#[test]
fn close_notify_last_one_wins() {
    assert!(sends_close_notify(&["-s", "-S", "3", "4"]));
    assert!(!sends_close_notify(&["-S", "-s", "3", "4"]));
    assert!(sends_close_notify(&["-sS", "3", "4"]));
    assert!(!sends_close_notify(&["-Ss", "3", "4"]));
    assert!(!sends_close_notify(&[
        "--close-notify",
        "--no-close-notify",
        "3",
        "4"
    ]));
    assert!(sends_close_notify(&["--no-close-notify", "-S", "3", "4"]));
}

#[test]
fn enforce_close_notify_short_and_long_forms() {
    assert!(enforces_close_notify(&["-J", "3", "4"]));
    assert!(enforces_close_notify(&["--enforce-close-notify", "3", "4"]));
    assert!(!enforces_close_notify(&["-j", "3", "4"]));
    assert!(!enforces_close_notify(&[
        "--no-enforce-close-notify",
        "3",
        "4"
    ]));
}

#[test]
fn enforce_close_notify_last_one_wins() {
    assert!(enforces_close_notify(&["-j", "-J", "3", "4"]));
    assert!(!enforces_close_notify(&["-J", "-j", "3", "4"]));
    assert!(!enforces_close_notify(&["-Jj", "3", "4"]));
    assert!(enforces_close_notify(&[
        "--no-enforce-close-notify",
        "--enforce-close-notify",
        "3",
        "4"
    ]));
}

#[test]
fn client_cert_short_and_long_forms() {
    assert!(!client_cert_mandatory(&["-Y", "3", "4"]));
    assert!(!client_cert_mandatory(&["--client-cert", "3", "4"]));
    assert!(client_cert_mandatory(&["-y", "3", "4"]));
    assert!(client_cert_mandatory(&[
        "--mandatory-client-cert",
        "3",
        "4"
    ]));
}

#[test]
fn client_cert_last_one_wins() {
    assert!(client_cert_mandatory(&["-Y", "-y", "3", "4"]));
    assert!(!client_cert_mandatory(&["-y", "-Y", "3", "4"]));
    assert!(!client_cert_mandatory(&["-yY", "3", "4"]));
    assert!(client_cert_mandatory(&["-Yy", "3", "4"]));
    assert!(!client_cert_mandatory(&[
        "--mandatory-client-cert",
        "--client-cert",
        "3",
        "4"
    ]));
}

#[test]
fn short_flags_cluster() {
    assert!(sends_close_notify(&["-jS", "3", "4"]));
    assert!(enforces_close_notify(&["-sJ", "3", "4"]));
    // A value option ends its cluster and takes the rest of it.
    assert_eq!(timeout_stderr(&["-SJv0", "-K", "100", "3", "4"]), "");
    assert_eq!(
        timeout_stderr(&["-SK100", "3", "4"]),
        fatal("handshake timed out")
    );
    assert_fails(
        &["-v0S", "3", "4"],
        100,
        &fatal("verbosity must be an unsigned integer"),
    );
}

#[test]
fn value_in_the_same_argument_or_the_next() {
    assert_eq!(timeout_stderr(&["-v0", "-K100", "3", "4"]), "");
    assert_eq!(timeout_stderr(&["-v", "0", "-K", "100", "3", "4"]), "");
    assert_eq!(
        timeout_stderr(&["--verbosity=0", "--handshake-timeout=100", "3", "4"]),
        ""
    );
    // At -v 2 the connection's end line comes first.
    for args in [
        &["-v2", "-K", "100", "3", "4"][..],
        &["-v", "2", "-K", "100", "3", "4"],
    ] {
        let stderr = timeout_stderr(args);
        let (ended, last) = stderr.split_once('\n').unwrap_or_default();
        assert!(
            ended.starts_with("s6-tlsd-io: info: connection ended after ")
                && ended.ends_with(" ms: the handshake failed"),
            "{stderr}"
        );
        assert_eq!(last, fatal("handshake timed out"));
    }
}

#[test]
fn value_option_takes_the_next_argument_even_an_operand() {
    // `-v 3 4`: "3" is the verbosity, and fdw is missing.
    assert_fails(&["-v", "3", "4"], 100, USAGE);
    // Even one that starts with a dash.
    assert_fails(
        &["-v", "-1", "3", "4"],
        100,
        &fatal("verbosity must be an unsigned integer"),
    );
}

#[test]
fn value_option_followed_by_double_dash_is_left_unset() {
    // -v stays at its default 1: the timeout is reported; "3 4" are fdr fdw.
    assert_eq!(
        timeout_stderr(&["-K", "100", "-v", "--", "3", "4"]),
        fatal("handshake timed out")
    );
    // -K stays at its default 0: no timeout.
    assert_no_timeout(&["-K", "--", "3", "4"]);
    // -k stays at its default 0.
    assert_eq!(sni_level(&["-k", "--", "3", "4"]), 0);
    // A value option with nothing after it: no operands left.
    assert_fails(&["-v"], 100, USAGE);
}

#[test]
fn handshake_timeout_short_and_long_forms() {
    assert_eq!(
        timeout_stderr(&["-K", "100", "3", "4"]),
        fatal("handshake timed out")
    );
    assert_eq!(
        timeout_stderr(&["--handshake-timeout=100", "3", "4"]),
        fatal("handshake timed out")
    );
    assert_no_timeout(&["-K0", "3", "4"]);
    assert_no_timeout(&["--handshake-timeout=0", "3", "4"]);
}

#[test]
fn last_value_wins_for_value_options() {
    assert_eq!(timeout_stderr(&["-v", "1", "-v0", "-K100", "3", "4"]), "");
    assert_eq!(
        timeout_stderr(&["-v0", "--verbosity=1", "-K100", "3", "4"]),
        fatal("handshake timed out")
    );
    assert_no_timeout(&["-K100", "-K0", "3", "4"]);
}

#[test]
fn sni_level_short_and_long_forms() {
    assert_eq!(sni_level(&["-k", "0", "3", "4"]), 0);
    assert_eq!(sni_level(&["-k1", "3", "4"]), 1);
    assert_eq!(sni_level(&["-k", "2", "3", "4"]), 2);
    assert_eq!(sni_level(&["-k", "7", "3", "4"]), 2);
    assert_eq!(sni_level(&["--sni-level=1", "3", "4"]), 1);
    assert_eq!(sni_level(&["--sni-level=2", "3", "4"]), 2);
    assert_eq!(sni_level(&["--sni", "3", "4"]), 1);
    assert_eq!(sni_level(&["--mandatory-sni", "3", "4"]), 2);
}

#[test]
fn sni_flags_last_one_wins() {
    assert_eq!(sni_level(&["--sni", "--mandatory-sni", "3", "4"]), 2);
    assert_eq!(sni_level(&["--mandatory-sni", "--sni", "3", "4"]), 1);
}

#[test]
fn sni_level_option_overrides_sni_flags_in_any_order() {
    assert_eq!(sni_level(&["-k", "0", "--mandatory-sni", "3", "4"]), 0);
    assert_eq!(sni_level(&["--mandatory-sni", "-k", "0", "3", "4"]), 0);
    assert_eq!(sni_level(&["--sni", "-k0", "3", "4"]), 0);
    assert_eq!(sni_level(&["-k0", "--sni", "3", "4"]), 0);
    assert_eq!(sni_level(&["-k", "2", "--sni", "3", "4"]), 2);
    assert_eq!(sni_level(&["--sni", "-k", "2", "3", "4"]), 2);
    assert_eq!(
        sni_level(&["--sni-level=1", "--mandatory-sni", "3", "4"]),
        1
    );
    assert_eq!(
        sni_level(&["--mandatory-sni", "--sni-level=1", "3", "4"]),
        1
    );
}

#[test]
fn mandatory_sni_serves_named_pairs_without_a_default_pair() {
    let keys = default_keys();
    let env = env_of(&[
        ("CERTFILE:localhost", &keys.cert.display().to_string()),
        ("KEYFILE:localhost", &keys.key.display().to_string()),
    ]);
    assert_serves(raw(&["--mandatory-sni", "--", "3", "4"]).env(env));
}

#[test]
fn notification_fd_short_and_long_forms() {
    for argv in [
        &["-d", "5", "3", "4"][..],
        &["-d5", "3", "4"],
        &["--notification-fd=5", "3", "4"],
    ] {
        let mut e = raw(argv).start();
        let mut tls = connect(&e, tls13(), "localhost");
        let block = as_map(&e.notification());
        assert_eq!(
            block.get("SSL_PROTOCOL"),
            Some(&Some("TLSv1.3".into())),
            "{argv:?}"
        );
        echo(&mut e, &mut tls);
        finish(e, tls);
    }
}

#[test]
fn operands_after_fdr_and_fdw_are_ignored_even_if_they_look_like_options() {
    assert_parses(&["3", "4", "-x", "--foo", "--bar=baz", "-", "--", "junk"]);
    assert_parses(&["--", "3", "4", "-v", "x"]);
    // They have no effect either.
    assert!(!sends_close_notify(&["3", "4", "-S"]));
    assert!(!enforces_close_notify(&["--", "3", "4", "-J"]));
    assert_no_timeout(&["3", "4", "-K", "1"]);
    assert_eq!(sni_level(&["3", "4", "--mandatory-sni"]), 0);
}

// ------------------------------------------------ what s6-tlsd 2.8 passes

#[test]
fn s6_tlsd_argv_with_mandatory_client_cert_and_mandatory_sni_is_accepted() {
    let keys = default_keys();
    let env = env_of(&[
        ("CERTFILE:localhost", &keys.cert.display().to_string()),
        ("KEYFILE:localhost", &keys.key.display().to_string()),
        ("CAFILE", &ca().pem_path.display().to_string()),
    ]);
    let argv = [
        "-v",
        "2",
        "-d",
        "5",
        "-S",
        "-J",
        "-y",
        "-K",
        "3000",
        "--mandatory-sni",
        "--",
        "3",
        "4",
    ];
    let mut e = raw(&argv).env(env).start();
    let mut tls = connect(&e, client_with_cert(), "localhost");
    let block = as_map(&e.notification());
    assert_eq!(
        block.get("SSL_TLS_SNI_SERVERNAME"),
        Some(&Some("localhost".into()))
    );
    assert_eq!(
        block.get("SSL_PEER_CERT_SUBJECT"),
        Some(&Some("CN=cli test client".into()))
    );
    echo(&mut e, &mut tls);
    // -S: the app's EOF sends close_notify.
    e.close_app_tx();
    let (rest, end) = read_to_end_tls(&mut tls);
    assert!(rest.is_empty());
    assert!(end.is_ok(), "close_notify expected: {end:?}");
    // -J: a bare FIN from the client is fatal.
    half_close(&tls.sock);
    let exit = e.wait_exit();
    // -v 2: info lines come first; the fatal line is last.
    assert_eq!(exit.code, Some(98));
    assert!(
        exit.stderr
            .ends_with(&fatal("remote closed connection without a close_notify")),
        "{}",
        exit.stderr
    );
}

#[test]
fn s6_tlsd_argv_with_optional_client_cert_and_sni_is_accepted() {
    let keys = default_keys();
    let argv = [
        "-v", "1", "-d", "5", "-Y", "-K", "3000", "--sni", "--", "3", "4",
    ];
    let mut e = raw(&argv)
        .keys(keys)
        .set("CAFILE", &ca().pem_path.display().to_string())
        .start();
    let mut tls = connect(&e, tls13(), "localhost");
    let block = as_map(&e.notification());
    assert_eq!(block.get("SSL_PEER_CERT_SUBJECT"), Some(&None));
    echo(&mut e, &mut tls);
    finish(e, tls);
}

#[test]
fn s6_tlsd_minimal_argv_is_accepted() {
    let mut e = raw(&["-d", "5", "--", "3", "4"]).start();
    let mut tls = connect(&e, tls12(), "localhost");
    let block = as_map(&e.notification());
    assert_eq!(block.get("SSL_PROTOCOL"), Some(&Some("TLSv1.2".into())));
    echo(&mut e, &mut tls);
    finish(e, tls);
}
