//! `HOST`: `[user@]host[:port]`, or an alias resolved later against
//! `~/.ssh/config`.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSpec {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl HostSpec {
    pub fn parse(s: &str) -> Result<HostSpec, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("HOST is empty".into());
        }
        let (user, rest) = match s.rsplit_once('@') {
            Some((u, r)) if !u.is_empty() => (Some(u.to_string()), r),
            Some(_) => return Err(format!("`{s}`: empty user name before `@`")),
            None => (None, s),
        };
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (h, after) = inner
                .split_once(']')
                .ok_or_else(|| format!("`{s}`: `[` without a closing `]`"))?;
            match after {
                "" => (h, None),
                p => (
                    h,
                    Some(
                        p.strip_prefix(':')
                            .ok_or_else(|| format!("`{s}`: expected `:port` after `]`"))?,
                    ),
                ),
            }
        } else if rest.matches(':').count() > 1 {
            (rest, None) // a bare IPv6 address
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(format!("`{s}`: `{host}` is not a host name or address"));
        }
        let port = match port {
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("`{s}`: port `{p}` is not a number from 1 to 65535"))?,
            ),
            None => None,
        };
        Ok(HostSpec {
            user,
            host: host.to_string(),
            port,
        })
    }

    /// Only these run through the local agent; any other address, even
    /// 127.0.0.2, is reached over SSH.
    pub fn is_local(&self) -> bool {
        matches!(self.host.as_str(), "localhost" | "127.0.0.1" | "::1")
    }
}

impl fmt::Display for HostSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            write!(f, "{}", self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let h = HostSpec::parse("pi@nas.lan:2222").unwrap();
        assert_eq!(
            (h.user.as_deref(), h.host.as_str(), h.port),
            (Some("pi"), "nas.lan", Some(2222))
        );
        assert_eq!(HostSpec::parse("[::1]:22").unwrap().host, "::1");
        assert_eq!(HostSpec::parse("::1").unwrap().port, None);
        assert_eq!(HostSpec::parse("alias").unwrap().to_string(), "alias");
        assert_eq!(
            HostSpec::parse("u@[fe80::1]:2").unwrap().to_string(),
            "u@[fe80::1]:2"
        );
        assert!(HostSpec::parse("h:0").is_err());
        assert!(HostSpec::parse("h:port").is_err());
        assert!(HostSpec::parse("@h").is_err());
        assert!(HostSpec::parse("").is_err());
    }

    #[test]
    fn only_three_names_are_local() {
        for (h, local) in [
            ("localhost", true),
            ("127.0.0.1", true),
            ("::1", true),
            ("127.0.0.2", false),
            ("nas", false),
        ] {
            assert_eq!(HostSpec::parse(h).unwrap().is_local(), local, "{h}");
        }
    }
}
