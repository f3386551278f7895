//! Password rules, checked before anything is hashed.

use crate::DomainError;

/// Shortest password accepted (ASVS 5.0 §6.2.1 asks for at least 8; 12 is the
/// common stronger floor).
pub const MIN_CHARS: usize = 12;
/// Longest password accepted, so nobody makes the server hash a megabyte.
pub const MAX_CHARS: usize = 256;

/// Least strength accepted: zxcvbn's 3, "safely unguessable" (about 10^8
/// guesses or more) — what refuses the common, breached-pattern and
/// context-derived choices NIST SP 800-63B §3.1.1.2 asks services to block
/// (`password1234`, `qwertyuiopas`, `aaaaaaaaaaaa`, the user's own email).
pub const MIN_STRENGTH: zxcvbn::Score = zxcvbn::Score::Three;
/// Characters judged for strength: zxcvbn's cost grows quickly with length,
/// and a password longer than this is long enough — unless its start is weak.
const STRENGTH_CHARS: usize = 64;

/// Checks a new password: 12 to 256 characters, and not guessable by
/// zxcvbn's dictionaries of common and breached passwords, keyboard walks,
/// repeats, dates — or the words of `context` (the username, the account
/// name). Character classes are not required (NIST SP 800-63B §3.1.1.2).
pub fn check_new_password(password: &str, context: &[&str]) -> Result<(), DomainError> {
    check_new_password_field("password", password, context)
}

/// [`check_new_password`] for a request whose field has another name
/// (`new_password` of a password change), so the error names it. The error
/// says why, never what the password was.
pub fn check_new_password_field(
    field: &'static str,
    password: &str,
    context: &[&str],
) -> Result<(), DomainError> {
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Err(DomainError::invalid(
            field,
            format!("must be at least {MIN_CHARS} characters"),
        ));
    }
    if chars > MAX_CHARS {
        return Err(DomainError::invalid(
            field,
            format!("must be at most {MAX_CHARS} characters"),
        ));
    }
    let judged: String = password.chars().take(STRENGTH_CHARS).collect();
    // The username, its local part run together, and each of its pieces
    // count as words of their own.
    let mut words: Vec<String> = Vec::new();
    for c in context {
        let local = c.split('@').next().unwrap_or(c);
        words.push(c.to_lowercase());
        words.push(local.replace(['.', ' ', '-', '_', '+'], "").to_lowercase());
        words.extend(
            c.split(['@', '.', ' ', '-', '_', '+'])
                .map(str::to_lowercase),
        );
    }
    words.retain(|w| w.chars().count() >= 3);
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let estimate = zxcvbn::zxcvbn(&judged, &words);
    if estimate.score() < MIN_STRENGTH {
        let why = estimate
            .feedback()
            .and_then(|f| f.warning())
            .map(|w| format!(" ({w})"))
            .unwrap_or_default();
        return Err(DomainError::invalid(
            field,
            format!(
                "is too easy to guess{why}: avoid common passwords, keyboard patterns, repeats \
                 and your own name or email; a few unrelated words make a strong one"
            ),
        ));
    }
    Ok(())
}

/// Whether a presented (login) password is worth hashing at all. Over-long
/// input is rejected as a failed login without spending argon2 on it.
pub fn plausible_login_password(password: &str) -> bool {
    !password.is_empty() && password.len() <= MAX_CHARS * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_rules() {
        assert!(check_new_password("correct horse battery", &[]).is_ok());
        assert!(check_new_password("short", &[]).is_err());
        assert!(check_new_password(&"x".repeat(MAX_CHARS + 1), &[]).is_err());
        assert!(
            check_new_password("éàüñøçßåæœ€ŧ", &[]).is_ok(),
            "counted in characters, not bytes"
        );
        assert!(!plausible_login_password(""));
        assert!(!plausible_login_password(&"x".repeat(1 << 20)));
    }

    #[test]
    fn guessable_passwords_are_refused_without_being_echoed() {
        for weak in [
            "password1234",
            "Password1234!",
            "qwertyuiopasdf",
            "aaaaaaaaaaaaaaaa",
            "123456789012",
            "iloveyou12345",
            "letmeinletmein",
        ] {
            let error = check_new_password(weak, &[]).expect_err(weak);
            let message = error.to_string();
            assert!(message.contains("too easy to guess"), "{weak}: {message}");
            assert!(
                !message.contains(weak),
                "the password is not echoed: {message}"
            );
        }
        // The user's own email, or its parts, is no password.
        let email = "dana.scully@example.com";
        assert!(check_new_password("dana.scully@example.com", &[email]).is_err());
        assert!(check_new_password("danascully2024", &[email]).is_err());
        // A long password whose start is weak is judged by its start.
        assert!(check_new_password(&"ab".repeat(100), &[]).is_err());
        for strong in [
            "correct horse battery staple",
            "a long enough password",
            "tangerine-gravel-orbit-9",
            "vH7#kq2!Lz9@wM4p",
        ] {
            assert!(check_new_password(strong, &[email]).is_ok(), "{strong}");
        }
    }

    #[test]
    fn the_longest_password_is_judged_quickly() {
        let started = std::time::Instant::now();
        let _ = check_new_password(&"Zq9!".repeat(MAX_CHARS / 4), &[]);
        // Generous bound: this guards against quadratic blow-up, not speed.
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
}
