//! An attacker no one here wrote: tlslite-ng (tests/support/hostile.py)
//! plays malformed and unusual handshakes against the real binary, started
//! as s6-tlsd starts it, and says what it got back.
//!
//! Before the ServerHello the engine decides, and every refusal must be the
//! alert the RFCs name, in the clear (issue 13, sections 1 and 2). After it,
//! rustls decides and its API offers no way to send another alert: those
//! tests pin what a client sees today, as the "Conformance" section of the
//! reference pages writes it down, so that a rustls upgrade that changes an
//! answer fails here and the page gets updated.
//!
//! Each case: what the client saw (one event a line, see hostile.py), the
//! exit code, and the one line on stderr.

mod common;

use std::io::Read;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::*;

const PYTHON: &str = "/usr/bin/python3";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/hostile.py");
/// The pinned tlslite-ng, as .ci/test installs it.
const TLSLITE: &str = "0.8.2";

/// What one attack came to.
struct Seen {
    /// What the client saw, one event a line.
    client: String,
    exit: Exit,
}

/// tlslite-ng must be there (.ci/test installs it): a missing peer is a
/// failure, not a silent pass.
fn require_tlslite() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let out = Command::new(PYTHON)
            .args(["-c", "import tlslite; print(tlslite.__version__)"])
            .output()
            .expect("run /usr/bin/python3");
        let version = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "tlslite-ng is not installed: {PYTHON} -m pip install tlslite-ng=={TLSLITE} \
             (.ci/test does it)"
        );
        if version.trim() != TLSLITE {
            eprintln!(
                "note: tlslite-ng {} here, the suite pins {TLSLITE}",
                version.trim()
            );
        }
    });
}

/// Runs `case` of hostile.py against a fresh engine whose application never
/// closes fdr: what the client saw, and how the engine ended.
fn attack(case: &str) -> Seen {
    attack_with(spawn(), case, false)
}

/// Runs `case`, a handshake that must succeed: once the handshake is done
/// (the notification block is complete), the application closes fdr, so
/// that the engine ends the connection when the client does.
fn attack_good(case: &str) -> Seen {
    attack_with(spawn(), case, true)
}

fn attack_with(spawn: Spawn, case: &str, app_closes: bool) -> Seen {
    require_tlslite();
    let mut e = spawn.start();
    let sock = e.client.take().expect("client socket");
    let mut client = Command::new(PYTHON)
        .arg(SCRIPT)
        .arg(case)
        .stdin(Stdio::from(OwnedFd::from(sock)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hostile.py");
    if app_closes {
        // Ends at the block's end, or at the engine's exit.
        let mut block = Vec::new();
        let _ = e.notif.take().expect("-d").read_to_end(&mut block);
        e.close_app_tx();
    }
    let status = wait_or_kill(&mut client, Duration::from_secs(10), || {
        format!("hostile.py {case} still running after 10 s")
    });
    let mut out = String::new();
    let mut err = String::new();
    let _ = client
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out);
    let _ = client
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err);
    assert!(status.success(), "hostile.py {case}: {status}\n{err}");
    let exit = e.wait(Duration::from_secs(10));
    Seen { client: out, exit }
}

/// The engine refused with exit 98 and exactly one line on stderr, which
/// it returns.
fn refused(seen: &Seen) -> &str {
    let exit = &seen.exit;
    assert_eq!(
        exit.code,
        Some(98),
        "client saw {:?}, stderr {:?}",
        seen.client,
        exit.stderr
    );
    let lines: Vec<&str> = exit.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {:?}", exit.stderr);
    let line = lines[0];
    assert!(
        line.starts_with("s6-tlsd-io: fatal: the TLS engine closed the connection "),
        "{line}"
    );
    line
}

/// The client got `alert` in the clear, nothing before it (no ServerHello),
/// then the connection's end; exit 98 with one line, returned.
fn refused_in_the_clear<'a>(seen: &'a Seen, alert: &str) -> &'a str {
    assert_eq!(
        seen.client,
        format!("alert: fatal {alert}\nclosed\n"),
        "stderr: {:?}",
        seen.exit.stderr
    );
    refused(seen)
}

/// A whole handshake, then the client's close_notify and the engine's
/// clean end.
fn completed(seen: &Seen) {
    assert_eq!(
        seen.client, "serverhello\nserver finished\nhandshake done\nclosed\n",
        "stderr: {:?}",
        seen.exit.stderr
    );
    assert_eq!((seen.exit.code, seen.exit.stderr.as_str()), (Some(0), ""));
}

const AFTER_HANDSHAKE: &str = "serverhello\nserver finished\nhandshake done\n";

// ------------------------------------------------ 1: the old-client check

/// A hello rustls refuses for another reason than its version (a
/// supported_versions of odd length, an empty handshake record): the real
/// reason, never "TLS 1.1 or older", however it is cut into records.
fn not_blamed_on_the_version(case: &str) {
    let seen = attack(case);
    let line = refused_in_the_clear(&seen, "decode_error");
    assert!(!line.contains("TLS 1.1"), "{case}: {line}");
}

fn blamed_on_the_version(case: &str) {
    let seen = attack(case);
    let line = refused_in_the_clear(&seen, "protocol_version");
    assert!(
        line.ends_with("the client offers only TLS 1.1 or older"),
        "{case}: {line}"
    );
}

#[test]
fn malformed_tls13_hello_in_one_record_gets_decode_error() {
    not_blamed_on_the_version("tls13-whole");
}

#[test]
fn malformed_tls13_hello_in_1_byte_records_gets_decode_error_not_protocol_version() {
    not_blamed_on_the_version("tls13-1byte");
}

#[test]
fn malformed_tls13_hello_in_2_byte_records_gets_decode_error_not_protocol_version() {
    not_blamed_on_the_version("tls13-2byte");
}

#[test]
fn tls13_hello_in_1_byte_records_with_an_empty_record_gets_decode_error() {
    not_blamed_on_the_version("tls13-1byte-empty");
}

#[test]
fn tls13_hello_in_2_byte_records_with_an_empty_record_gets_decode_error() {
    not_blamed_on_the_version("tls13-2byte-empty");
}

#[test]
fn tls11_only_hello_gets_protocol_version() {
    blamed_on_the_version("tls11-whole");
}

#[test]
fn tls11_only_hello_in_1_byte_records_gets_protocol_version() {
    blamed_on_the_version("tls11-1byte");
}

#[test]
fn tls11_only_hello_in_2_byte_records_gets_protocol_version() {
    blamed_on_the_version("tls11-2byte");
}

#[test]
fn tls11_only_hello_in_1_byte_records_with_an_empty_record_gets_protocol_version() {
    blamed_on_the_version("tls11-1byte-empty");
}

#[test]
fn tls11_only_hello_in_2_byte_records_with_an_empty_record_gets_protocol_version() {
    blamed_on_the_version("tls11-2byte-empty");
}

// ------------------------------------------------ 2: before the ServerHello

#[test]
fn huge_client_hello_record_gets_record_overflow() {
    refused_in_the_clear(&attack("huge-hello-record"), "record_overflow");
}

#[test]
fn huge_second_client_hello_record_gets_record_overflow() {
    refused_in_the_clear(&attack("huge-hello-record-second"), "record_overflow");
}

#[test]
fn client_hello_record_of_exactly_2_14_bytes_is_accepted() {
    completed(&attack_good("max-hello-record"));
}

#[test]
fn ssl3_legacy_version_with_supported_versions_gets_protocol_version() {
    refused_in_the_clear(&attack("ssl3-legacy-version"), "protocol_version");
}

#[test]
fn tls13_hello_without_key_share_gets_missing_extension() {
    refused_in_the_clear(&attack("no-key-share"), "missing_extension");
}

#[test]
fn no_signature_scheme_for_our_key_gets_handshake_failure_in_the_clear() {
    refused_in_the_clear(&attack("no-fitting-sigalg"), "handshake_failure");
}

#[test]
fn records_interleaved_inside_the_client_hello_get_unexpected_message() {
    for case in [
        "interleaved-ccs",
        "interleaved-alert",
        "interleaved-appdata",
    ] {
        let seen = attack(case);
        assert_eq!(
            seen.client, "alert: fatal unexpected_message\nclosed\n",
            "{case}: {:?}",
            seen.exit.stderr
        );
        refused(&seen);
    }
}

#[test]
fn fallback_scsv_below_tls13_gets_inappropriate_fallback() {
    refused_in_the_clear(&attack("fallback-scsv"), "inappropriate_fallback");
}

/// Where tlsfuzzer's test-fallback-scsv.py puts the SCSV in its hellos:
/// first, in the middle (twice), last; and alone, the hello's only suite.
const SCSV_PLACES: [&str; 5] = ["0", "1", "2", "3", "alone"];

/// tlsfuzzer's "FALLBACK - hello TLSv1.1" and "FALLBACK - record TLSv1.1
/// hello TLSv1.1" probes: a fallback hello that offers nothing newer than
/// TLS 1.1 is offered no version at all, so it is no downgrade. The
/// version is checked before the SCSV, as OpenSSL does: protocol_version,
/// never inappropriate_fallback (issue 26, item 1).
#[test]
fn fallback_hello_of_tls11_gets_protocol_version() {
    for set in ["unserved-tls11", "record-tls11"] {
        for place in SCSV_PLACES {
            blamed_on_the_version(&format!("fallback-{set}-{place}"));
        }
    }
}

/// tlsfuzzer's other "FALLBACK - hello" probes: hellos without
/// supported_versions, of legacy_version TLS 1.2 and 0x0304 ("SSL 3.4",
/// still TLS 1.2 at most), whose suites we do not serve. TLS 1.2 is a
/// version we serve below our best: the SCSV refuses the hello before the
/// suites are looked at.
#[test]
fn fallback_scsv_is_checked_before_the_suites() {
    for version in ["tls12", "ssl34"] {
        for place in SCSV_PLACES {
            let case = format!("fallback-unserved-{version}-{place}");
            let seen = attack(&case);
            let line = refused_in_the_clear(&seen, "inappropriate_fallback");
            assert!(line.contains("TLS_FALLBACK_SCSV"), "{case}: {line}");
        }
    }
}

#[test]
fn a_hello_of_suites_we_refuse_without_the_scsv_gets_handshake_failure() {
    for case in ["unserved-tls12", "unserved-ssl34"] {
        let seen = attack(case);
        let line = refused_in_the_clear(&seen, "handshake_failure");
        assert!(!line.contains("FALLBACK"), "{case}: {line}");
    }
}

/// An engine that speaks h2 only, and only to clients that offer it.
fn strict_h2() -> Spawn {
    spawn().set("TLS_ALPN", "h2").set("TLS_ALPN_STRICT", "1")
}

#[test]
fn alpn_after_a_retry_that_keeps_it_is_served() {
    let seen = attack_with(strict_h2(), "alpn-after-retry-kept", true);
    assert_eq!(
        seen.client,
        format!("helloretryrequest\n{AFTER_HANDSHAKE}closed\n"),
        "stderr: {:?}",
        seen.exit.stderr
    );
    assert_eq!((seen.exit.code, seen.exit.stderr.as_str()), (Some(0), ""));
}

/// The second ClientHello of `case` refused with no_application_protocol
/// in the clear, after the HelloRetryRequest and before any ServerHello,
/// with `reason` in the one line on stderr.
fn refused_after_retry(spawn: Spawn, case: &str, reason: &str) {
    let seen = attack_with(spawn, case, false);
    assert_eq!(
        seen.client, "helloretryrequest\nalert: fatal no_application_protocol\nclosed\n",
        "stderr: {:?}",
        seen.exit.stderr
    );
    let line = refused(&seen);
    assert!(line.contains(reason), "{line}");
}

/// TLS_ALPN_STRICT holds on the hello the handshake completes with: a
/// second ClientHello (after a HelloRetryRequest) without ALPN is refused
/// as a first one would be.
#[test]
fn alpn_strict_holds_on_the_hello_after_retry() {
    refused_after_retry(
        strict_h2(),
        "alpn-after-retry-dropped",
        "the client offers no application protocol (ALPN), and TLS_ALPN_STRICT is set",
    );
}

/// A second hello whose ALPN has nothing in common with ours: refused with
/// the same words as a first one, strict or not.
#[test]
fn alpn_changed_after_retry_is_refused() {
    for spawn in [strict_h2(), spawn().set("TLS_ALPN", "h2")] {
        refused_after_retry(
            spawn,
            "alpn-after-retry-changed",
            "no application protocol in common: the client offers \"imap\", the server speaks h2",
        );
    }
}

#[test]
fn fallback_scsv_from_a_tls13_client_is_no_fallback() {
    completed(&attack_good("fallback-scsv-tls13"));
}

// ------------------------------------------------ 3: after the ServerHello
//
// rustls decides; each pin is one entry of the reference pages'
// "Conformance" section. The stderr line is pinned too: it names rustls'
// reason.

/// The tests below, each named in the reference pages' "Conformance"
/// section.
const PINNED: &[&str] = &[
    "oversized_ciphertext_record_gets_bad_record_mac",
    "finished_of_the_wrong_length_gets_decrypt_error",
    "empty_alert_record_gets_decode_error",
    "record_with_an_all_zero_inner_plaintext_gets_no_alert",
    "key_update_fragmented_around_application_data_gets_no_alert",
    "plaintext_finished_after_the_keys_changed_gets_bad_record_mac",
    "client_hello_over_64_kib_is_refused_without_an_alert",
    "handshake_message_over_64_kib_is_refused_without_an_alert",
    "rejected_early_data_of_8_kib_is_skipped",
    "rejected_early_data_over_8_kib_gets_bad_record_mac",
];

#[test]
fn the_conformance_section_names_every_pinned_test() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |rel: &str| std::fs::read_to_string(root.join(rel)).expect(rel);
    let this = read("tests/hostile.rs");
    for page in ["doc/s6-tlsd-io.html", "doc/s6-tlsd-io.1"] {
        let text = read(page);
        let section = &text[text.find("Conformance").expect("a Conformance section")..];
        for name in PINNED {
            assert!(this.contains(&format!("fn {name}()")), "no test {name}");
            assert!(section.contains(name), "{page} does not name {name}");
        }
    }
}

/// The client saw `client`, and the engine exited 98 with `reason` ending
/// its one line.
fn pinned(seen: &Seen, client: &str, reason: &str) {
    assert_eq!(seen.client, client, "stderr: {:?}", seen.exit.stderr);
    let line = refused(seen);
    assert!(line.ends_with(reason), "{line}");
}

#[test]
fn oversized_ciphertext_record_gets_bad_record_mac() {
    // RFC 8446 section 5.2: record_overflow.
    pinned(
        &attack("oversized-ciphertext"),
        &format!("{AFTER_HANDSHAKE}encrypted alert: fatal bad_record_mac\nclosed\n"),
        "after the handshake: cannot decrypt peer's message",
    );
}

#[test]
fn finished_of_the_wrong_length_gets_decrypt_error() {
    // RFC 8446 section 6.2 suggests decode_error.
    pinned(
        &attack("short-finished"),
        "serverhello\nserver finished\nencrypted alert: fatal decrypt_error\nclosed\n",
        "during the handshake: cannot decrypt peer's message",
    );
}

#[test]
fn empty_alert_record_gets_decode_error() {
    // RFC 8446 section 5.4 (and 6): unexpected_message.
    pinned(
        &attack("empty-alert"),
        &format!("{AFTER_HANDSHAKE}encrypted alert: fatal decode_error\nclosed\n"),
        "after the handshake: received corrupt message of type MissingData(\"AlertLevel\")",
    );
}

#[test]
fn record_with_an_all_zero_inner_plaintext_gets_no_alert() {
    // RFC 8446 section 5.4: unexpected_message.
    pinned(
        &attack("zero-inner-type"),
        &format!("{AFTER_HANDSHAKE}closed\n"),
        "after the handshake: peer misbehaved: IllegalTlsInnerPlaintext",
    );
}

#[test]
fn key_update_fragmented_around_application_data_gets_no_alert() {
    // RFC 8446 section 5.1: unexpected_message.
    pinned(
        &attack("fragmented-keyupdate"),
        &format!("{AFTER_HANDSHAKE}closed\n"),
        "after the handshake: peer misbehaved: MessageInterleavedWithHandshakeMessage",
    );
}

#[test]
fn plaintext_finished_after_the_keys_changed_gets_bad_record_mac() {
    // RFC 8446 section 5: unexpected_message.
    pinned(
        &attack("plaintext-finished"),
        "serverhello\nserver finished\nencrypted alert: fatal bad_record_mac\nclosed\n",
        "during the handshake: cannot decrypt peer's message",
    );
}

#[test]
fn client_hello_over_64_kib_is_refused_without_an_alert() {
    // RFC 8446 allows handshake messages of up to 2^24 bytes.
    pinned(
        &attack("huge-client-hello"),
        "closed\n",
        "during the handshake: unable to read from remote: message buffer full",
    );
}

#[test]
fn handshake_message_over_64_kib_is_refused_without_an_alert() {
    pinned(
        &attack("huge-handshake-message"),
        "serverhello\nserver finished\nclosed\n",
        "during the handshake: received corrupt message of type HandshakePayloadTooLarge",
    );
}

#[test]
fn rejected_early_data_of_8_kib_is_skipped() {
    // One record of 8192 bytes, charged twice against rustls' 16 KiB.
    completed(&attack_good("early-data-8192"));
}

#[test]
fn rejected_early_data_over_8_kib_gets_bad_record_mac() {
    // RFC 8446 section 4.2.10: skip up to max_early_data_size (rustls:
    // 16 KiB, but each rejected record counts twice). One record of 8193
    // bytes.
    pinned(
        &attack("early-data-8193"),
        &format!("{AFTER_HANDSHAKE}encrypted alert: fatal bad_record_mac\nclosed\n"),
        "during the handshake: cannot decrypt peer's message",
    );
}
