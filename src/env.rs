//! A snapshot of the environment: sorted by name, so that lookups stay
//! cheap with thousands of `KEYFILE:x` variables and iteration is in a fixed
//! order (the first bad pair reported is always the same one).

use std::ffi::{OsStr, OsString};

pub struct Env(Vec<(OsString, OsString)>);

impl Env {
    pub fn from_process() -> Env {
        Env::sorted(std::env::vars_os().collect())
    }

    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Env {
        Env::sorted(pairs.iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    fn sorted(mut vars: Vec<(OsString, OsString)>) -> Env {
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        Env(vars)
    }

    pub fn get(&self, name: &str) -> Option<&OsStr> {
        let i = self
            .0
            .binary_search_by(|(k, _)| k.as_os_str().cmp(OsStr::new(name)))
            .ok()?;
        Some(&self.0[i].1)
    }

    /// The client, as the super-server exported it (s6-tcpserver and
    /// tcpserver set TCPREMOTEIP and TCPREMOTEPORT, proxy-server behind a
    /// load balancer sets them again; s6-tlsd passes them on): `ip_port`,
    /// the form of s6-tcpserverd's own `accept` line, one that needs no
    /// brackets for IPv6 (`::1_40404`). A value that is not an address or a
    /// port is left out: it could not be one the client has. (A log finds
    /// a connection by its pid, log.rs: the address may differ from the
    /// super-server's.)
    pub fn remote(&self) -> Option<String> {
        let is = |name: &str, ok: fn(&u8) -> bool, max: usize| {
            self.get(name)
                .and_then(|v| v.to_str())
                .filter(|v| !v.is_empty() && v.len() <= max && v.bytes().all(|b| ok(&b)))
        };
        let ip = is(
            "TCPREMOTEIP",
            |b| b.is_ascii_hexdigit() || b".:".contains(b),
            45,
        )?;
        Some(match is("TCPREMOTEPORT", u8::is_ascii_digit, 5) {
            Some(port) => format!("{ip}_{port}"),
            None => ip.to_string(),
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = (&OsStr, &OsStr)> {
        self.0.iter().map(|(k, v)| (k.as_os_str(), v.as_os_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_find_every_variable() {
        let env = Env::from_pairs(&[("B", "2"), ("A", "1"), ("KEYFILE:x", "k")]);
        assert_eq!(env.get("A"), Some(OsStr::new("1")));
        assert_eq!(env.get("KEYFILE:x"), Some(OsStr::new("k")));
        assert_eq!(env.get("C"), None);
        let names: Vec<_> = env.iter().map(|(k, _)| k.to_owned()).collect();
        assert_eq!(names, ["A", "B", "KEYFILE:x"]);
    }
}
