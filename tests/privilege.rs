//! Spec section 3: TLS_UID and TLS_GID. When started by root, the engine
//! reads its keys, then drops to TLS_GID (with exactly that one group) and
//! TLS_UID; 0 or unset changes nothing. These tests need root (as here and
//! in CI); elsewhere they say so and return.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::time::Duration;

use common::*;

const NOBODY: &str = "65534";

fn is_root() -> bool {
    running_as_root("privilege tests skipped")
}

/// A fresh key pair whose two files only root can read.
fn root_only_keys() -> Keys {
    let k = keys(Alg::EcdsaP256, &["localhost"]);
    for f in [&k.cert, &k.key] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let meta = std::fs::metadata(f).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o600));
    }
    k
}

/// The fields of one line of /proc/self/status.
fn own_status(field: &str) -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
        .trim()
        .to_string()
}

fn fields(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_string).collect()
}

fn four(id: &str) -> Vec<String> {
    vec![id.to_string(); 4]
}

/// What the engine's ids look like while it relays a connection.
struct Ids {
    uid: Vec<String>,
    gid: Vec<String>,
    groups: Vec<String>,
}

/// Starts an engine with root-only key files and `ids` in its environment,
/// completes a handshake and an echo, reads its ids from /proc while the
/// connection is up, then ends the connection (exit 0, nothing on stderr).
fn ids_while_relaying(ids: &[(&str, &str)]) -> Ids {
    let (ids, stderr) = ids_and_stderr(&[], ids);
    assert_eq!(stderr, "");
    ids
}

/// The same with `args` before `--`; what the engine printed on stderr.
fn ids_and_stderr(args: &[&str], ids: &[(&str, &str)]) -> (Ids, String) {
    let k = root_only_keys();
    let mut env = key_env(&k);
    env.extend(ids.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    let mut e = spawn().no_notify().args(args).env(env).start();
    let mut tls = connect(&e, tls13(), "localhost");
    tls.write_all(b"ping").unwrap();
    assert_eq!(read_app(&mut e, 4), b"ping");
    let got = Ids {
        uid: fields(&e.proc_status("Uid").expect("Uid")),
        gid: fields(&e.proc_status("Gid").expect("Gid")),
        groups: fields(&e.proc_status("Groups").expect("Groups")),
    };
    // Still relaying after the drop.
    e.app_tx().write_all(b"pong").unwrap();
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
    // The app ends first, then the client.
    e.close_app_tx();
    client_close_notify(&mut tls);
    let _ = read_to_end_tls(&mut tls);
    drop(tls);
    e.client.take();
    let exit = e.wait_exit();
    assert_eq!(exit.code, Some(0), "{}", exit.stderr);
    (got, exit.stderr)
}

fn with_ids(ids: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = key_env(default_keys());
    env.extend(ids.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    env
}

// ---------------------------------------------------------------- drops

#[test]
fn uid_and_gid_drop_after_reading_root_only_keys() {
    if !is_root() {
        return;
    }
    let ids = ids_while_relaying(&[("TLS_UID", NOBODY), ("TLS_GID", NOBODY)]);
    assert_eq!(ids.uid, four(NOBODY), "real, effective, saved, fs uid");
    assert_eq!(ids.gid, four(NOBODY), "real, effective, saved, fs gid");
    assert_eq!(ids.groups, vec![NOBODY.to_string()], "supplementary groups");
}

#[test]
fn gid_only_changes_the_gid_and_groups_and_keeps_root() {
    if !is_root() {
        return;
    }
    let (ids, _) = ids_and_stderr(&[], &[("TLS_GID", NOBODY)]);
    assert_eq!(ids.uid, four("0"));
    assert_eq!(ids.gid, four(NOBODY));
    assert_eq!(ids.groups, vec![NOBODY.to_string()]);
}

#[test]
fn uid_only_changes_the_uid_and_clears_the_groups() {
    if !is_root() {
        return;
    }
    let (ids, _) = ids_and_stderr(&[], &[("TLS_UID", NOBODY)]);
    assert_eq!(ids.uid, four(NOBODY));
    assert_eq!(ids.gid, fields(&own_status("Gid")), "gid unchanged");
    assert_eq!(ids.groups, Vec::<String>::new(), "no group of root's left");
}

/// One line on stderr, the warning `expected`; `-v 0` silences it.
fn warns(ids: &[(&str, &str)], expected: &str) {
    let (_, stderr) = ids_and_stderr(&[], ids);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr:?}");
    assert!(lines[0].starts_with("s6-tlsd-io: warning: "), "{stderr:?}");
    assert!(lines[0].contains(expected), "{stderr:?}");
    let (_, quiet) = ids_and_stderr(&["-v", "0"], ids);
    assert_eq!(quiet, "", "-v 0");
}

#[test]
fn uid_without_gid_warns() {
    if !is_root() {
        return;
    }
    let gid = own_status("Gid");
    let gid = gid.split_whitespace().next().unwrap();
    warns(
        &[("TLS_UID", NOBODY)],
        &format!("TLS_UID is set but TLS_GID is not: running as uid {NOBODY} with gid {gid}"),
    );
}

#[test]
fn gid_without_uid_warns() {
    if !is_root() {
        return;
    }
    warns(
        &[("TLS_GID", NOBODY)],
        &format!("TLS_GID is set but TLS_UID is not: running as gid {NOBODY} with uid 0"),
    );
}

#[test]
fn both_ids_or_a_zero_one_alone_give_no_warning() {
    if !is_root() {
        return;
    }
    for ids in [
        &[("TLS_UID", NOBODY), ("TLS_GID", "0")][..],
        &[("TLS_UID", "0"), ("TLS_GID", NOBODY)][..],
        &[("TLS_UID", "0")][..],
        &[("TLS_GID", "0")][..],
    ] {
        assert_eq!(ids_and_stderr(&[], ids).1, "", "{ids:?}");
    }
}

#[test]
fn zero_ids_change_nothing() {
    if !is_root() {
        return;
    }
    let ids = ids_while_relaying(&[("TLS_UID", "0"), ("TLS_GID", "0")]);
    assert_eq!(ids.uid, fields(&own_status("Uid")));
    assert_eq!(ids.gid, fields(&own_status("Gid")));
    assert_eq!(ids.groups, fields(&own_status("Groups")));
}

#[test]
fn unset_ids_change_nothing() {
    if !is_root() {
        return;
    }
    let ids = ids_while_relaying(&[]);
    assert_eq!(ids.uid, fields(&own_status("Uid")));
    assert_eq!(ids.gid, fields(&own_status("Gid")));
    assert_eq!(ids.groups, fields(&own_status("Groups")));
}

#[test]
fn trust_anchors_are_read_after_the_drop() {
    if !is_root() {
        return;
    }
    // A CAFILE only root can read is out of reach once the engine is nobody.
    let dir = tmpdir("priv-ca");
    let cafile = write_file(&dir, "ca.pem", ca().cert.pem().as_bytes());
    std::fs::set_permissions(&cafile, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut env = key_env(&root_only_keys());
    env.extend([
        ("TLS_UID".to_string(), NOBODY.to_string()),
        ("TLS_GID".to_string(), NOBODY.to_string()),
        ("CAFILE".to_string(), cafile.display().to_string()),
    ]);
    let mut e = spawn().no_notify().args(&["-Y"]).env(env).start();
    let exit = e.wait(Duration::from_secs(10));
    assert_eq!(
        (exit.code, exit.stderr),
        (
            Some(96),
            fatal(&format!(
                "unable to read CAFILE file {}: Permission denied",
                cafile.display()
            ))
        )
    );
}

// -------------------------------------------------------- invalid values

#[test]
fn non_numeric_tls_uid_fails_at_startup() {
    if !is_root() {
        return;
    }
    for bad in ["nobody", "", "-1", "+1", "65534x", " 65534", "4294967296"] {
        assert_eq!(
            startup_failure(&[], with_ids(&[("TLS_UID", bad), ("TLS_GID", NOBODY)])),
            (Some(100), fatal("invalid $TLS_UID")),
            "TLS_UID={bad:?}"
        );
    }
}

#[test]
fn non_numeric_tls_gid_fails_at_startup() {
    if !is_root() {
        return;
    }
    for bad in ["nogroup", "", "-1", "+1", "65534x", " 65534", "4294967296"] {
        assert_eq!(
            startup_failure(&[], with_ids(&[("TLS_UID", NOBODY), ("TLS_GID", bad)])),
            (Some(100), fatal("invalid $TLS_GID")),
            "TLS_GID={bad:?}"
        );
    }
}

/// Runs the engine as nobody (real uid not 0) with `env`, fds 3 and up
/// closed; returns the exit code and stderr.
fn run_as_nobody(env: &[(String, String)]) -> (Option<i32>, String) {
    let mut cmd = direct(&["--", "3", "4"], env);
    // SAFETY: only async-signal-safe system calls between fork and exec,
    // after `direct`'s own (which closes fds 3 to 9).
    unsafe {
        cmd.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    code_and_stderr(cmd, || "still running after 20 s".to_string())
}

#[test]
fn ids_are_not_read_when_not_started_by_root() {
    if !is_root() {
        return;
    }
    // Key files that nobody may read too.
    let k = keys(Alg::EcdsaP256, &["localhost"]);
    std::fs::set_permissions(&k.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in [&k.cert, &k.key] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let mut env = key_env(&k);
    env.extend([
        ("TLS_UID".to_string(), "garbage".to_string()),
        ("TLS_GID".to_string(), "garbage".to_string()),
    ]);
    // Past the keys and the ids, the engine reaches its (closed) fdr.
    let (code, stderr) = run_as_nobody(&env);
    assert_eq!(code, Some(111), "{stderr}");
    assert!(
        stderr.starts_with("s6-tlsd-io: fatal: unable to use fd 3: "),
        "{stderr}"
    );
}
