//! Password rules, checked before anything is hashed.

use crate::DomainError;

/// Shortest password accepted (ASVS 5.0 §6.2.1 asks for at least 8; 12 is the
/// common stronger floor).
pub const MIN_CHARS: usize = 12;
/// Longest password accepted, so nobody makes the server hash a megabyte.
pub const MAX_CHARS: usize = 256;

/// Checks a new password against the length rules. Character classes are not
/// required (NIST SP 800-63B §3.1.1.2).
pub fn check_new_password(password: &str) -> Result<(), DomainError> {
    check_new_password_field("password", password)
}

/// [`check_new_password`] for a request whose field has another name
/// (`new_password` of a password change), so the error names it.
pub fn check_new_password_field(field: &'static str, password: &str) -> Result<(), DomainError> {
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
        assert!(check_new_password("correct horse battery").is_ok());
        assert!(check_new_password("short").is_err());
        assert!(check_new_password(&"x".repeat(MAX_CHARS + 1)).is_err());
        assert!(
            check_new_password(&"é".repeat(MIN_CHARS)).is_ok(),
            "counted in characters, not bytes"
        );
        assert!(!plausible_login_password(""));
        assert!(!plausible_login_password(&"x".repeat(1 << 20)));
    }
}
