//! Per-statement checks about the session itself rather than the rules: whether the
//! token that opened it has expired, and whether a statement would change the role
//! pgmoat pinned for the identity's group. Kept here so the relay and the judge each
//! call one function.

use std::time::SystemTime;

use super::error::SessionError;
use super::verdict::{OwnCause, Refusal};
use crate::auth::clock::Clock;
use crate::classify::{Facts, Kind};
use crate::protocol::sqlstate;

/// What the relay checks before it lets a Query, Parse or FunctionCall through.
#[derive(Debug, Clone, Default)]
pub struct SessionGuard {
    /// When the session's token stops being valid; None when it does not lapse
    /// (passwords, certificates, or `session_may_outlive_token: true`).
    pub expires_at: Option<SystemTime>,
    /// The clock `expires_at` is judged by: the OIDC verifier's (the system clock but
    /// in tests). Only read when there is an `expires_at`.
    pub clock: Clock,
}

impl SessionGuard {
    /// Err (FATAL 28000) once the session's token has expired.
    pub fn check(&self) -> Result<(), SessionError> {
        match self.expires_at {
            Some(at) if self.clock.now() >= at => Err(SessionError::refused(
                sqlstate::INVALID_AUTHORIZATION,
                format!(
                    "pgmoat: the session's token expired at {}; reconnect with a fresh token",
                    rfc3339(at)
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// With a role pinned for the session, refuse anything that could change it: SET ROLE,
/// SET SESSION AUTHORIZATION and their RESET / set_config routes (all `set_role`),
/// DISCARD (DISCARD ALL resets the session authorization, and with it the role),
/// changes to a setting pgmoat cannot name, and SQL it cannot analyse.
pub fn role_change_refusal(pinned: Option<&str>, statements: &[Facts]) -> Option<Refusal> {
    let role = pinned?;
    let changes = statements.iter().any(|f| {
        f.kinds.contains(&Kind::SetRole)
            || f.kinds.contains(&Kind::Discard)
            || f.settings.iter().any(|s| matches!(s.as_str(), "*" | "all"))
            || f.unanalysable.is_some()
    });
    changes.then(|| {
        Refusal::own(
            OwnCause::PinnedRole,
            sqlstate::INSUFFICIENT_PRIVILEGE,
            format!("pgmoat: this session runs as role \"{role}\" for its group and may not change role"),
        )
    })
}

/// `2026-12-01T10:37:30Z` (pgmoat's one formatter, in `audit::time`).
pub use crate::audit::time::format_seconds as rfc3339;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn dates_format() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096);
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56Z");
    }

    #[test]
    fn expiry_is_fatal_28000() {
        let g = SessionGuard {
            expires_at: Some(SystemTime::now() - Duration::from_secs(1)),
            clock: Clock::system(),
        };
        let (code, message, _) = g.check().unwrap_err().client_fatal().unwrap();
        assert_eq!(code, "28000");
        assert!(message.starts_with("pgmoat: the session's token expired at "));
        let later = SessionGuard {
            expires_at: Some(SystemTime::now() + Duration::from_secs(60)),
            clock: Clock::system(),
        };
        assert!(later.check().is_ok());
        assert!(SessionGuard::default().check().is_ok());
    }

    #[test]
    fn expiry_follows_the_guards_clock() {
        let clock = Clock::adjustable();
        let g = SessionGuard {
            expires_at: Some(SystemTime::now() + Duration::from_secs(60)),
            clock: clock.clone(),
        };
        assert!(g.check().is_ok());
        clock.advance(Duration::from_secs(50));
        assert!(g.check().is_ok(), "ten seconds left");
        clock.advance(Duration::from_secs(11));
        let (code, _, _) = g.check().unwrap_err().client_fatal().unwrap();
        assert_eq!(code, "28000");
    }
}
